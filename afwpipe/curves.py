"""Per-epoch training curves of a head, written by DVCLive (DVC's own logger, https://dvc.org/doc/dvclive) so
that ``dvc plots show`` / ``dvc plots diff`` draw them and a running experiment's progress is visible while it
trains (docs/heads.md, "Training curves").

One folder per head, at a path that never names the head (``<workspace>/curves/<task>-<fold>[-<scene>]/``,
the keys of ``metrics/train.json``), so ``dvc plots diff`` overlays two experiments' heads of one task and
fold. DVCLive's layout in it::

    metrics.json                        the latest epoch's values and ``step`` (the epoch number, 1-based)
    plots/metrics/loss.tsv              step, loss           (mean training batch loss of the epoch)
    plots/metrics/select/score.tsv      step, score          (selection score, see below)
    plots/metrics/select/au_f1.tsv      step, au_f1          (AU mean F1, threshold 0.5)
    plots/metrics/select/expr_f1.tsv    step, expr_f1        (EXPR macro F1 over 8 classes)
    plots/metrics/select/va_ccc.tsv     step, va_ccc         (VA mean CCC; valence_ccc, arousal_ccc beside it)
    plots/metrics/val/score.tsv ...     the same scores of the fold's validation videos (``train.val_curves``)

``select/*`` are the scores of the videos that choose the epoch (``train.epoch_selection``: an inner split of
the training videos, or the fold's validation videos with ``val``; :mod:`afwpipe.train`), present only when
some videos choose it; a run with a fixed epoch count (fold ``all``, too few training videos) logs ``loss``
only. ``val/*`` (``train.val_curves: true``, off by default) scores the fold's validation videos after every
epoch for the curves alone; they never choose the epoch. The numbers are exactly those of the model's
``metrics.json`` ``epochs`` list, which stays the run's record (per-AU and per-class scores included); these
files are its curves.

DVCLive settings, for a DVC stage (DVCLive's guide "DVCLive with DVC"): ``dvcyaml=False`` (dvc.yaml declares
the folder's ``metrics.json`` and ``plots/metrics`` itself), ``save_dvc_exp=False`` (``dvc exp run`` records the
experiment; a hand run makes none), ``report=None`` (no HTML / Markdown report). Nothing here needs a network or
a git remote: DVCLive posts to DVC Studio only when a Studio token is configured (``DVC_STUDIO_TOKEN`` or ``dvc
config studio.token``; ``DVC_STUDIO_OFFLINE=true`` turns it off), and its log level is ``DVCLIVE_LOGLEVEL``
(default WARNING). Run from outside a DVC project (the working directory), DVCLive would run ``dvc init`` in an
enclosing git repository (its ``get_dvc_repo``); :class:`ProjectLive` leaves such a directory alone and only
writes the files.

DVCLive starts a run by deleting the folder's previous ``metrics.json`` and ``plots/metrics`` (a rerun never
appends to the last run's curves) and then writes only files it created, so a file hardlinked to the DVC
cache is never written in place (README, "Iterate on heads").
"""

from __future__ import annotations

from pathlib import Path

from dvclive import Live
from scmrepo.exceptions import SCMError

from .store import Workspace

#: workspace subfolder holding one curves folder per head
CURVES = "curves"
#: per task, (key of its :func:`afwpipe.train.score` entry, curve name): logged as ``select/<name>``, ``val/<name>``
HEADLINES = {"au": (("f1", "au_f1"),), "expr": (("f1", "expr_f1"),),
             "va": (("ccc", "va_ccc"), ("valence", "valence_ccc"), ("arousal", "arousal_ccc"))}


def curves_key(task: str, fold: str | int, scene: str | None = None) -> str:
    """``<task>-<fold>[-<scene>]``: the curves folder's name (head-independent, as ``metrics/train.json``)."""
    return "-".join([task, str(fold)] + ([scene] if scene else []))


def curves_dir(ws: Workspace, task: str, fold: str | int, scene: str | None = None) -> Path:
    """``<ws.root>/curves/<task>-<fold>[-<scene>]``, the DVCLive folder of that head."""
    return ws.root / CURVES / curves_key(task, fold, scene)


def _in_dvc_project(start: Path) -> bool:
    return any((p / ".dvc").is_dir() for p in (start, *start.parents))


class ProjectLive(Live):
    """DVCLive's :class:`dvclive.Live` that does not touch a directory outside a DVC project: there DVCLive's own
    set-up opens or creates a DVC repository (``dvc init`` of an enclosing git repository); here it is skipped and
    only the metric files are written. Inside a DVC project (``dvc repro``, ``dvc exp run``, ``afwpipe train``
    from the repository) DVCLive's set-up runs unchanged, except that a git repository without commits (where it
    raises ``SCMError: Empty git repo``) is treated as no repository."""

    def _init_dvc(self):
        if not _in_dvc_project(Path.cwd()):
            return
        try:
            super()._init_dvc()
        except SCMError:  # a DVC project in a git repository without commits: DVCLive 3.49 cannot read HEAD
            self._dvc_repo = None


class EpochCurves:
    """The curves of one training run, one DVCLive step per epoch.

    Args:
        path: the run's curves folder (:func:`curves_dir`); created, and its previous curves removed.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.live = ProjectLive(str(self.path), report=None, save_dvc_exp=False, dvcyaml=False)

    def log(self, epoch: int, loss: float, select: dict | None = None, *, val: dict | None = None,
            scope: str = "") -> None:
        """One epoch: ``loss`` (mean training batch loss), when videos choose the epoch their scores ``select``,
        and with ``train.val_curves`` the validation videos' scores ``val`` (each :func:`afwpipe.train.score`'s
        dict: ``score`` and the tasks' headline metrics, logged as ``select/*`` and ``val/*``); then
        ``metrics.json`` is rewritten, so a running experiment shows the epoch at once. ``epoch`` (1-based) is
        the TSV files' ``step``. ``scope``: a prefix of every name (``<scope>/loss`` ...), for
        :meth:`scoped`."""
        at = f"{scope}/" if scope else ""
        self.live.step = epoch
        self.live.log_metric(f"{at}loss", float(loss))
        for prefix, scores in (("select", select), ("val", val)):
            for name, value in _headlines(scores):
                self.live.log_metric(f"{at}{prefix}/{name}", value)
        self.live.next_step()

    def scoped(self, scope: str) -> ScopedCurves:
        """One run's curves inside this folder, every name under ``<scope>/`` (``plots/metrics/<scope>/loss.tsv``,
        ``metrics.json``'s ``<scope>`` entry): a ``train@auto-<fold>`` run (:mod:`afwpipe.train_all`) logs each
        task's head this way into the one folder its DVC stage declares. Its ``close`` leaves this folder open."""
        return ScopedCurves(self, scope)

    def close(self) -> None:
        """Write the final ``metrics.json`` (the last epoch's values)."""
        self.live.end()


class ScopedCurves:
    """:meth:`EpochCurves.scoped`: logs into a shared :class:`EpochCurves` under a prefix; closing it does
    nothing (the shared folder is closed once, by its owner)."""

    def __init__(self, curves: EpochCurves, scope: str):
        self.curves, self.scope = curves, scope

    def log(self, epoch: int, loss: float, select: dict | None = None, *, val: dict | None = None) -> None:
        """:meth:`EpochCurves.log` under ``<scope>/``."""
        self.curves.log(epoch, loss, select, val=val, scope=self.scope)

    def close(self) -> None:
        """Nothing: the owner of the shared folder closes it."""


def _headlines(scores: dict | None) -> list[tuple[str, float]]:
    if not scores:
        return []
    out = [("score", float(scores["score"]))]
    for task, pairs in HEADLINES.items():
        if task in scores:
            out += [(name, float(scores[task][key])) for key, name in pairs]
    return out


__all__ = ["CURVES", "HEADLINES", "EpochCurves", "ProjectLive", "ScopedCurves", "curves_dir", "curves_key"]
