"""Scores of a dataset's declared tasks by type (:class:`afwpipe.datasets.base.TaskSpec`), over valid labels only.

- ``class``: ``uar`` (unweighted average recall: the mean over the classes present in the truth of each class's
  recall, as ``sklearn.metrics.balanced_accuracy_score``; the DFEW / MAFW / FERV39k measure), ``war`` (weighted
  average recall = accuracy) and ``f1`` (macro F1 over the classes present in truth or predictions, as
  ``sklearn.metrics.f1_score(average="macro", zero_division=0)``);
- ``multilabel``: ``f1``, the mean over the classes of each class's binary F1 (threshold applied by the caller;
  ``f1_score(average="macro", zero_division=0)`` on the indicator matrix), and ``per_class``;
- ``regression``: ``ccc`` (Lin 1989, :func:`afwpipe.metrics.ccc`) and ``pearson`` (Pearson's r, as
  ``scipy.stats.pearsonr``; 0 when either side is constant) per target and their means; Hume-Vidmimic2 (ABAW6
  EMI) scores the mean Pearson r over its six intensities.

A video task is scored with one row per video, a frame task with one row per valid frame of every scored video.
"""

from __future__ import annotations

import numpy as np

from .datasets.base import TaskSpec
from .metrics import ccc, f1_binary


def class_scores(pred: np.ndarray, true: np.ndarray) -> dict:
    """``{"uar", "war", "f1"}`` of class indices ``pred`` / ``true`` ``[N]`` (module docstring).

    Raises:
        ValueError: shapes differ, or nothing to score.
    """
    pred, true = np.asarray(pred).ravel(), np.asarray(true).ravel()
    if pred.shape != true.shape or true.size == 0:
        raise ValueError(f"class_scores: {pred.size} predictions for {true.size} labels (need equal, ≥ 1)")
    present = np.unique(true)
    recall = [float(np.mean(pred[true == c] == c)) for c in present]
    f1 = [f1_binary(pred == c, true == c) for c in np.union1d(present, np.unique(pred))]
    return {"uar": float(np.mean(recall)), "war": float(np.mean(pred == true)), "f1": float(np.mean(f1))}


def multilabel_scores(pred: np.ndarray, true: np.ndarray, names) -> dict:
    """``{"f1", "per_class"}`` of 0/1 matrices ``pred`` / ``true`` ``[N, C]`` (module docstring)."""
    pred, true = np.asarray(pred), np.asarray(true)
    if pred.shape != true.shape or pred.ndim != 2 or len(true) == 0:
        raise ValueError(f"multilabel_scores: pred {pred.shape} vs true {true.shape} (need equal [N ≥ 1, C])")
    per = [f1_binary(pred[:, j], true[:, j]) for j in range(true.shape[1])]
    return {"f1": float(np.mean(per)), "per_class": dict(zip(names, per))}


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r of ``x`` and ``y`` ``[N]``; 0.0 when either is constant (r is undefined there)."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    dx, dy = x - x.mean(), y - y.mean()
    denom = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    return 0.0 if denom == 0 else float((dx * dy).sum() / denom)


def regression_scores(pred: np.ndarray, true: np.ndarray, names) -> dict:
    """``{"ccc", "pearson", "per_target": {target: {"ccc", "pearson"}}}`` of ``[N, C]`` values (module docstring)."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if pred.shape != true.shape or pred.ndim != 2 or len(true) == 0:
        raise ValueError(f"regression_scores: pred {pred.shape} vs true {true.shape} (need equal [N ≥ 1, C])")
    per = {n: {"ccc": ccc(pred[:, j], true[:, j]), "pearson": pearson(pred[:, j], true[:, j])}
           for j, n in enumerate(names)}
    return {"ccc": float(np.mean([v["ccc"] for v in per.values()])),
            "pearson": float(np.mean([v["pearson"] for v in per.values()])), "per_target": per}


def decide(task: TaskSpec, out: np.ndarray) -> np.ndarray:
    """Decisions from a head's probabilities / values ``[..., C]``: class argmax ``[...]``, multilabel
    ``prob ≥ 0.5`` (int8), regression the values."""
    if task.type == "class":
        return out.argmax(-1)
    if task.type == "multilabel":
        return (out >= 0.5).astype(np.int8)
    return out


def task_scores(task: TaskSpec, decisions: np.ndarray, labels: np.ndarray) -> dict:
    """Scores of ``decisions`` (:func:`decide`) against ``labels`` (the stored labels, with the invalid marker),
    rows with an invalid label left out; the headline scores of the task's type (module docstring).

    Raises:
        ValueError: no valid label to score.
    """
    ok = task.valid(labels)
    if not ok.any():
        raise ValueError(f"task {task.name}: no valid label to score")
    p, y = decisions[ok], labels[ok]
    if task.type == "class":
        return class_scores(p, y)
    if task.type == "multilabel":
        return multilabel_scores(p, y, task.names)
    return regression_scores(p.reshape(len(p), -1), y.reshape(len(y), -1), task.names)


#: the headline score of each type (the validation score that chooses an epoch)
HEADLINE = {"class": "uar", "multilabel": "f1", "regression": "ccc"}
