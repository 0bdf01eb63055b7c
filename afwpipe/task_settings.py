"""Training settings given once for every task or per task (params ``train.features``, ``train.k``).

The tracks do not gain from the same inputs: Netease Fuxi's ablations (ABAW5/6) found audio features help
EXPR and VA but hurt AU, and later ABAW entries set the clip length per track too. A setting is therefore
either one value for every task or a mapping ``{au: ..., expr: ..., va: ..., mtl: ...}``
(docs/heads.md, "Features per task"). :class:`afwpipe.train.TrainConfig` resolves both for its run's task,
:class:`afwpipe.feature_set.FeatureSetConfig` the features of every trained task.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import AfwpipeError, ConfigError

#: params ``train.features`` of the sample: AU on the face encoder alone, EXPR, VA and MTL on face + audio
DEFAULT_TRAIN_FEATURES = {"au": ["mini_xception"], "expr": ["mini_xception", "logmel"],
                          "va": ["mini_xception", "logmel"], "mtl": ["mini_xception", "logmel"]}


def per_task(value, tasks, key: str, known, error: type[AfwpipeError] = ConfigError) -> dict:
    """A setting given once for every task or per task, resolved for ``tasks``.

    Args:
        value: a mapping ``{task: value}`` (per task), or anything else (one value for every task).
        tasks: the tasks that need a value (params ``train.tasks``, or the one task of a run).
        key: the setting's name for error messages (``train.features``).
        known: every task name a mapping may use (:data:`afwpipe.labels.TRAIN_TASKS`).
        error: the error class raised.

    Returns:
        ``{task: value}`` for each of ``tasks``, in their order.

    Raises:
        error: the mapping names a task outside ``known``, or has no entry for one of ``tasks`` (the message
            names the task and the entries the mapping has).
    """
    tasks = list(tasks)
    if not isinstance(value, Mapping):
        return {t: value for t in tasks}
    unknown = sorted(str(t) for t in value if t not in known)
    if unknown:
        raise error(f"{key}: unknown task(s) {', '.join(unknown)} in the per-task mapping; tasks: {', '.join(known)}")
    missing = [t for t in tasks if t not in value]
    if missing:
        raise error(f"{key}: no entry for task {', '.join(missing)} (the mapping has {', '.join(value) or 'none'}); "
                    f"add it, or give one value for every task")
    return {t: value[t] for t in tasks}


def name_list(value, key: str, error: type[AfwpipeError] = ConfigError) -> list[str]:
    """Names given as a list or a comma-separated string (``mini_xception,logmel``), as a list.

    Raises:
        error: anything else (the message names ``key`` and the value).
    """
    if isinstance(value, str):
        return [f for f in value.split(",") if f]
    if isinstance(value, (list, tuple)) and all(isinstance(f, str) for f in value):
        return list(value)
    raise error(f"{key}: expected a list of names (or a per-task mapping of lists), got {value!r}")


__all__ = ["DEFAULT_TRAIN_FEATURES", "name_list", "per_task"]
