"""Each scene's score: its scene heads against the general heads on the scene's scored videos.

Netease Fuxi's ABAW6 entry reports what separate heads for the "reaction videos" gain over the general
heads on those videos (their ablation: EXPR +3.0 F1, VA +0.024 CCC). afwpipe makes the same comparison per
system (a track of one fold, or the fold ensemble): on the system's scored videos that a scene head of the
system predicted (:mod:`afwpipe.postprocess` routes them), the *scene head* row scores the system's decisions
(the scene head's outputs through the system's fill, smoothing and thresholds) and the *general head* row
scores the general head's outputs through the very same chain; only the head differs.

Each row carries its own honesty flag (:mod:`afwpipe.honesty`): a row is ``optimistic`` exactly when one of
its scored videos trained one of the row's heads, chose one of their epochs (``selected_on``, e.g.
``train.epoch_selection: val``), tuned the system's AU thresholds or smoothing, or fine-tuned an encoder whose
features the row's heads read. A scene head validated on its scene's videos of the fold
(:func:`afwpipe.folds.split_videos` with the scene) chooses its epoch as ``train.epoch_selection`` says, so with
``val`` its row is optimistic and says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .honesty import chosen_on_scored
from .labels import valid_mask
from .scores import KEY, labelled, score

#: the two rows of a scene entry: the system's decisions (scene heads) and the general heads' through the same chain
ROWS = ("scene_head", "general_head")


def row_honesty(scored: Sequence[str], heads: Sequence[str], trained: Mapping[str, set[str]],
                selected: Mapping[str, set[str]], tuning: Sequence[str],
                fitted: Mapping[str, Mapping[str, Sequence[str]]]) -> dict:
    """``{"heads", "optimistic", "optimistic_reason"}`` of one row of a scene entry.

    Args:
        scored: the videos the row is scored on (the system's scored videos of the scene).
        heads: the row's heads (model folder names).
        trained: head -> videos whose frames fit its weights (``train_videos`` of its metrics.json).
        selected: head -> videos that chose its epoch (``selected_on``).
        tuning: ``<fold>/<video>`` entries whose frames tuned the system's AU thresholds or smoothing.
        fitted: head -> encoder -> videos whose labels fine-tuned the features it reads.
    """
    scored = set(scored)
    reasons = []
    fit = {h: sorted(scored & set(trained.get(h, ()))) for h in heads}
    fit = {h: v for h, v in fit.items() if v}
    if fit:
        reasons.append("heads trained on scored videos: " + "; ".join(f"{h} on {', '.join(v)}" for h, v in fit.items()))
    reasons += chosen_on_scored(scored, {h: set(selected.get(h, ())) for h in heads}, tuning)
    for h in heads:
        for enc, names in (fitted.get(h) or {}).items():
            hit = sorted(scored & set(names))
            if hit:
                reasons.append(f"features {enc} (head {h}) fine-tuned on scored video(s): {', '.join(hit)}")
    return {"heads": list(heads), "optimistic": bool(reasons), "optimistic_reason": "; ".join(reasons) or None}


def score_scenes(track: str, scenes: Mapping[str, Mapping], eval_videos: Sequence[str], outputs: Mapping[str, Mapping],
                 labels: Mapping) -> dict:
    """Per scene, both rows' scores on the system's labelled scored videos of that scene.

    Args:
        track: ``au``, ``expr`` or ``va``.
        scenes: scene -> ``{"videos": [...], "scene_head": {row honesty}, "general_head": {row honesty}}`` (the
            ``scenes`` of a ``post/systems.json`` entry).
        eval_videos: the system's scored videos.
        outputs: video -> ``{"after": system decisions, "general": the general heads' decisions}`` (AU
            ``[T, 12]`` {0,1}, EXPR ``[T]``, VA ``[T, 2]``).
        labels: video -> track -> labels (:func:`afwpipe.readers.load_labels`).

    Returns:
        scene -> ``{"scene_head": {score, heads, optimistic, optimistic_reason}, "general_head": {...},
        "difference": scene head minus general head (F1 or CCC), "videos", "scored_on", "frames"}``; scenes
        without a labelled scored video are left out. Scores are :func:`afwpipe.scores.score` without the per-class
        tables.
    """
    out = {}
    evals = set(eval_videos)
    for scene, entry in scenes.items():
        names = labelled([v for v in entry["videos"] if v in evals], labels, track)
        if not names:
            continue
        true = np.concatenate([labels[v][track] for v in names])
        rows = {r: score(track, np.concatenate([outputs[v][arr] for v in names]), true)
                for r, arr in zip(ROWS, ("after", "general"))}
        key = KEY[track]
        res = {r: {**{k: v for k, v in rows[r].items() if k != "per_class"}, **entry[r]} for r in ROWS}
        res.update(difference=float(rows["scene_head"][key] - rows["general_head"][key]), videos=len(names),
                   scored_on=list(names), frames=int(sum(valid_mask(labels[v][track], track).sum() for v in names)))
        out[scene] = res
    return out


def scene_lines(metrics: Mapping[str, Mapping[str, Mapping]], reasons: bool = True) -> list[str]:
    """One line per (track, system, scene) of evaluate's metrics: ``scene reaction, expr official: scene heads F1
    0.41 vs general heads 0.38 (+0.03) on 2 videos`` with ``optimistic`` notes (and their reasons when
    ``reasons``; the report PNG leaves them to metrics.json)."""
    lines = []
    for track, systems in metrics.items():
        for fold, entry in systems.items():
            for scene, r in (entry.get("scenes") or {}).items():
                key = KEY[track]
                notes = [f"{row.replace('_', ' ')}s optimistic" + (f": {r[row]['optimistic_reason']}" if reasons else "")
                         for row in ROWS if r[row].get("optimistic")]
                lines.append(f"scene {scene}, {track} {fold}: scene heads {key.upper()} {r['scene_head'][key]:.4f} vs "
                             f"general heads {r['general_head'][key]:.4f} ({r['difference']:+.4f}) on "
                             f"{r['videos']} video(s)" + (f" ({'; '.join(notes)})" if notes else ""))
    return lines


__all__ = ["ROWS", "row_honesty", "score_scenes", "scene_lines"]
