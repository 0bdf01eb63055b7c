"""Which videos chose what a system uses, and whether a system's score is optimistic.

Model selection must not look at the frames a system is then scored on. A head's weights are fit on its
``train_videos`` and its epoch is chosen on its ``selected_on`` videos (``models/<head>/metrics.json``,
:mod:`afwpipe.train`: an inner split of the training videos by default, the fold's own validation videos
with ``train.epoch_selection: val``); post-processing tunes AU thresholds and smoothing on out-of-fold
frames (:mod:`afwpipe.postprocess`). A system is ``optimistic`` exactly when a video it is scored on is among
the videos that chose any of these (or trained one of its heads: the ensemble's fallback, and a
whole-dataset member, :func:`whole_dataset_members`).

A whole-dataset member (``train.folds: [..., all]``, :data:`afwpipe.folds.ALL`; Netease Fuxi ABAW5/6 vote
over their fold models and one model trained on all labelled videos) trained on every labelled ``train``
and ``val`` video of its task, so no labelled video is unseen by it: it has no score of its own, and an
ensemble it votes in is optimistic on every scored video it trained on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from . import layout, store
from .errors import PostprocessError, TrainError
from .folds import ALL, split_videos
from .labels import HEAD_TASKS
from .records import IndexFile


def head_videos(ws: store.Workspace, index: IndexFile, record: dict) -> tuple[set[str], set[str]]:
    """``(trained, selected)``: the videos head ``record`` (a predictions/index.json record) fit its weights on
    and those that chose its epoch.

    Read from ``train_videos`` and ``selected_on`` of ``models/<name>/metrics.json`` (the train step's); a
    metrics.json without ``selected_on`` (a head trained before ``train.epoch_selection`` existed) chose on its
    ``val_videos``. Without that file, recomputed from the index with :func:`afwpipe.folds.split_videos` (the
    same split the train step used, given the same index), counting its validation videos as choosing the
    epoch (the conservative reading).

    Raises:
        PostprocessError: metrics.json is unreadable or lacks the lists, or the split cannot be recomputed.
    """
    path = layout.run_record(ws, record["name"])
    if path.is_file():
        try:
            m = json.loads(path.read_text())
            return set(m["train_videos"]), set(m["selected_on"] if "selected_on" in m else m["val_videos"])
        except (ValueError, KeyError, TypeError) as e:
            raise PostprocessError(f"{path}: no train_videos / val_videos lists ({e}); retrain the head") from None
    try:
        train, val = split_videos(index, HEAD_TASKS[record["task"]], record["fold"], record.get("scene"))
    except (TrainError, KeyError) as e:
        raise PostprocessError(f"{path} is missing and the split of head {record['name']} cannot be recomputed "
                               f"from the index: {e}") from None
    return set(train), set(val)


def seen_videos(ws: store.Workspace, index: IndexFile, record: dict) -> set[str]:
    """Videos head ``record`` trained on or chose its epoch on (:func:`head_videos`).

    Raises:
        PostprocessError: as :func:`head_videos`.
    """
    trained, selected = head_videos(ws, index, record)
    return trained | selected


def selected_on(ws: store.Workspace, index: IndexFile, record: dict) -> set[str]:
    """Videos that chose head ``record``'s epoch (:func:`head_videos`).

    Raises:
        PostprocessError: as :func:`head_videos`.
    """
    return head_videos(ws, index, record)[1]


def chosen_on_scored(scored: Iterable[str], heads: Mapping[str, set[str]], tuning: Iterable[str]) -> list[str]:
    """Reasons a system scored on ``scored`` is optimistic (empty: it is not).

    Args:
        scored: the videos the system is scored on.
        heads: each of its heads -> the videos that chose that head's epoch (:func:`selected_on`).
        tuning: ``<fold>/<video>`` entries whose frames tuned its AU thresholds or smoothing.

    Returns:
        up to two reasons: the heads whose epoch a scored video chose, and the scored videos that tuned
        thresholds or smoothing.
    """
    scored = set(scored)
    reasons = []
    chose = {h: sorted(scored & set(v)) for h, v in heads.items()}
    chose = {h: v for h, v in chose.items() if v}
    if chose:
        reasons.append("epochs chosen on scored videos (train.epoch_selection val, the usual ABAW protocol): "
                       + "; ".join(f"{h} on {', '.join(v)}" for h, v in chose.items()))
    tuned = sorted(scored & {p.split("/", 1)[-1] for p in tuning})
    if tuned:
        reasons.append(f"thresholds or smoothing tuned on scored videos: {', '.join(tuned)}")
    return reasons


def whole_dataset_members(scored: Iterable[str], members: Mapping[str, Iterable[str]]) -> list[str]:
    """Reasons a system scored on ``scored`` is optimistic because of its whole-dataset members (module
    docstring; empty: none of them trained on a scored video).

    Args:
        scored: the videos the system is scored on.
        members: each head of fold ``all`` among its heads -> the videos it trained on or chose its epoch on
            (:func:`seen_videos`).

    Returns:
        one reason per such head that saw a scored video, naming the head and how many scored videos it saw.
    """
    scored = set(scored)
    reasons = []
    for head, seen in members.items():
        hit = sorted(scored & set(seen))
        if hit:
            reasons.append(f"whole-dataset member {head} (train.folds {ALL}) trained on {len(hit)} of the "
                           f"{len(scored)} scored video(s): {', '.join(hit[:5])}{', …' if len(hit) > 5 else ''}")
    return reasons


__all__ = ["chosen_on_scored", "head_videos", "seen_videos", "selected_on", "whole_dataset_members"]
