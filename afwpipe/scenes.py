"""Scene heads as DVC stages: the params list ``train.scenes`` checked against the manifest's ``scenes:``.

A *scene* is a subset of a dataset's videos listed in ``data_manifest.yaml`` (``datasets.<name>.scenes``), such
as the "reaction videos" (a person watching a screen) for which Netease Fuxi's ABAW6 entry trains separate
heads and to which it routes those test videos. afwpipe trains one head per (task, fold, scene)
(``models/<task>-<head>-<fold>-<scene>``, :func:`afwpipe.folds.split_videos` keeps the scene's videos), predicts
it on the scene's validation and test videos (:func:`afwpipe.predict.evaluation_videos`) and lets it replace the
general head there (:mod:`afwpipe.postprocess`).

DVC cannot read the manifest when it expands a ``matrix``, so the stage ``train_scene`` iterates over the
params list ``train.scenes``; :func:`check_scene_params` holds that list equal to the manifest's scenes, with
an error naming both files, so a scene is never silently left untrained nor a stage run for a scene the
manifest does not define.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import ConfigError
from .manifest import DatasetSpec


def check_scene_params(spec: DatasetSpec, scenes: Sequence[str] | None,
                       params: str = "params.yaml", manifest: str = "data_manifest.yaml") -> list[str]:
    """Check the params list ``train.scenes`` against the scenes of dataset ``spec``.

    Args:
        spec: the dataset (``spec.scenes``: scene -> video names, from the manifest).
        scenes: params ``train.scenes`` (None or ``[]``: no scene head is trained).
        params, manifest: the file names used in the messages.

    Returns:
        the scene names, in the order of ``scenes``.

    Raises:
        ConfigError: ``scenes`` is not a list of names, names one twice, names a scene the manifest does not
            define for ``spec.name``, omits a scene the manifest defines (DVC would never train its heads), or a
            scene lists no video.
    """
    scenes = [] if scenes is None else scenes
    if isinstance(scenes, str) or not all(isinstance(s, str) and s for s in scenes):
        raise ConfigError(f"{params}: train.scenes must be a list of scene names of {manifest} "
                          f"datasets.{spec.name}.scenes, got {scenes!r}")
    scenes = list(scenes)
    twice = sorted({s for s in scenes if scenes.count(s) > 1})
    if twice:
        raise ConfigError(f"{params}: train.scenes names {', '.join(twice)} more than once")
    known = dict(spec.scenes)
    unknown = [s for s in scenes if s not in known]
    if unknown:
        raise ConfigError(f"{params}: train.scenes {', '.join(unknown)} not defined in {manifest} "
                          f"datasets.{spec.name}.scenes (defined: {', '.join(sorted(known)) or 'none'}); "
                          "add the scene's video list there or remove it from train.scenes")
    missing = sorted(set(known) - set(scenes))
    if missing:
        raise ConfigError(f"{manifest} datasets.{spec.name}.scenes defines {', '.join(missing)} but {params} "
                          f"train.scenes does not list it, so DVC would never train its heads; add it to "
                          "train.scenes (or remove the scene from the manifest)")
    empty = [s for s in scenes if not known[s]]
    if empty:
        raise ConfigError(f"{manifest} datasets.{spec.name}.scenes.{empty[0]} lists no video")
    return scenes


__all__ = ["check_scene_params"]
