"""Frozen encoders: face crops or 16 kHz audio in, per-frame float32 embeddings out.

``create_encoder(name, weights=None, device="cpu")`` is the one door; ``list_encoders()`` says what
exists. Each encoder carries its config (``encoder.config``: name, modality, dim, input size or
sample rate and hop, normalisation, weights identity) for the feature store's attributes.
Importing this package registers every encoder below.
"""

from . import hf_audio, logmel, mini_xception, text, timm_encoders, vad, vggish, whisper_encoder  # noqa: F401  (register)
from . import finetuned  # noqa: F401  (registers ft_<run>, after the base encoders)
from .align import average_per_frame, frame_spans
from .base import AUDIO_SAMPLE_RATE, AudioEncoder, Encoder, EncoderConfig, VisualEncoder
from .registry import ENCODERS, create_encoder, describe_encoders, is_encoder, list_encoders, register_encoder
from .weights import ResolvedWeights, resolve_weights

__all__ = [
    "ENCODERS", "AUDIO_SAMPLE_RATE", "AudioEncoder", "Encoder", "EncoderConfig", "ResolvedWeights", "VisualEncoder",
    "average_per_frame", "create_encoder", "describe_encoders", "frame_spans", "is_encoder", "list_encoders",
    "register_encoder", "resolve_weights",
]
