"""How a DVC stage script is entered: ``python -m stages.<name> [key=value ...]``.

Each script in ``stages/`` defines ``run(params, **overrides)``: it reads its ``params.yaml`` section,
builds its config with ``Config.from_params(section, **overrides)`` and calls the step's one library
function (the same one ``afwpipe <command>`` calls). ``key=value`` arguments are the overrides of a DVC
``foreach`` / ``matrix`` item (``task=au fold=0``, ``encoder=mae``); values are read as YAML scalars.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

import yaml

from .config import load_params
from .errors import AfwpipeError, ConfigError


def parse_overrides(argv: Sequence[str]) -> dict:
    """``["task=au", "fold=0"]`` -> ``{"task": "au", "fold": 0}`` (values parsed as YAML scalars).

    Raises:
        ConfigError: an argument without ``=``.
    """
    out = {}
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not eq or not key:
            raise ConfigError(f"stage argument {arg!r}: expected key=value (e.g. task=au fold=0)")
        out[key] = yaml.safe_load(value) if value else None
    return out


def stage_main(run: Callable[..., object], argv: Sequence[str] | None = None) -> None:
    """Run a stage script's ``run(params, **overrides)`` with ``params.yaml`` of the working directory and
    exit: warnings go to stderr as ``afwpipe: WARNING: ...``, an AfwpipeError becomes one ``afwpipe: error:
    ...`` line and exit code 2 (no traceback), an int returned by ``run`` is the exit code."""
    logging.basicConfig(level=logging.WARNING, format="afwpipe: %(levelname)s: %(message)s")
    try:
        code = run(load_params(), **parse_overrides(sys.argv[1:] if argv is None else argv))
    except AfwpipeError as e:
        print(f"afwpipe: error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
