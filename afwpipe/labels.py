"""Label vocabularies of Aff-Wild2 (ABAW3..8) and their invalid markers.

Source: ABAW challenge papers (Kollias et al., ABAW3 2022 .. ABAW8 2025) and the annotation files'
headers. Line i (1-based, after the header) of an annotation file labels decoded frame i-1.
"""

AU_NAMES = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")
EXPR_NAMES = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")
VA_NAMES = ("valence", "arousal")

#: task -> (folder prefix, column names, invalid marker)
TASKS = {
    "au": ("AU", AU_NAMES, -1),
    "expr": ("EXPR", EXPR_NAMES, -1),
    "va": ("VA", VA_NAMES, -5),
}
AU_INVALID = -1
EXPR_INVALID = -1
VA_INVALID = -5.0
