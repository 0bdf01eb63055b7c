"""Fine-tuned runs as encoders: every ``<ws>/finetune/<run>/`` with a record is the encoder ``ft_<run>`` that
``afwpipe extract`` caches in its own store ``features/ft_<run>.zarr`` (never the base encoder's store).

``create_encoder("ft_<run>", weights=<run folder>)`` builds the base encoder's architecture (``weights="random"``:
no base file is needed), loads ``model.safetensors`` into it (strict: every key, every shape) and gives it the
config of the base encoder with ``name = ft_<run>``, ``weights = sha256:<model.safetensors>`` and
``extra["finetune"]``: the record's digest, base encoder and weights identity, task, fold, ``trained_on`` and
``selected_on``. That config is the store's identity, so a new fine-tune (new record) makes ``extract`` redo
every video, and a head reading the store knows which videos the features were fitted on
(:func:`afwpipe.readers.trained_on_of`).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import WeightsError
from .base import EncoderConfig
from .registry import ENCODERS, create_encoder
from .weights import sha256_path

#: prefix of the encoder name of a fine-tuned run: ``ft_<run>`` (also its feature store's name)
FT_PREFIX = "ft_"

RECORD = "record.json"
MODEL = "model.safetensors"


def read_record(folder: Path) -> dict:
    """The ``record.json`` of a finished run folder.

    Raises:
        WeightsError: no record (the run is not finished) or no ``model.safetensors``.
    """
    folder = Path(folder)
    if not (folder / RECORD).is_file() or not (folder / MODEL).is_file():
        raise WeightsError(f"{folder}: not a finished fine-tune (needs {RECORD} and {MODEL}); run "
                           f"`afwpipe finetune` first")
    return json.loads((folder / RECORD).read_text())


def finetuned_encoder(run: str, weights=None, device: str = "cpu"):
    """The encoder ``ft_<run>``: the base encoder with the fine-tuned weights (module docstring).

    Args:
        run: ``<encoder>-<task>[-<fold>]``.
        weights: the run folder (``<ws>/finetune/<run>``; ``afwpipe extract`` passes it).
        device: torch device string.

    Raises:
        WeightsError: no folder given, or it holds no finished run, or its weights do not fit the base encoder.
    """
    if weights is None or str(weights) == "random":
        raise WeightsError(f"{FT_PREFIX}{run}: a fine-tuned encoder needs its run folder as weights "
                           f"(e.g. work/sample/finetune/{run}); `afwpipe extract --encoder {FT_PREFIX}{run}` passes it")
    folder = Path(weights)
    rec = read_record(folder)
    base = rec["base"]
    enc = create_encoder(base["encoder"], weights="random", device=device, **base.get("options", {}))
    from safetensors.torch import load_file

    try:
        enc.model.load_state_dict(load_file(str(folder / MODEL), device=str(enc.device)), strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{folder / MODEL}: does not fit {base['encoder']}: {str(e)[:400]}") from e
    enc.model.eval()
    info = {"record": f"sha256:{sha256_path(folder / RECORD)}", "base_encoder": base["encoder"],
            "base_weights": base["weights"], "task": rec["task"], "fold": rec["fold"],
            "trained_on": rec["trained_on"], "selected_on": rec["selected_on"]}
    enc.cfg = enc.cfg.with_(name=f"{FT_PREFIX}{run}", weights=rec["weights"], extra={**enc.cfg.extra, "finetune": info})
    return enc


def list_runs(finetune_dir: Path) -> list[dict]:
    """One row per finished run of a workspace's ``finetune/``: ``name`` (``ft_<run>``), ``base``, ``task``,
    ``fold``, ``trained_on`` (count), ``best_epoch``, ``folder``."""
    rows = []
    for rec_path in sorted(Path(finetune_dir).glob(f"*/{RECORD}")):
        try:
            rec = read_record(rec_path.parent)
        except (WeightsError, ValueError):
            continue
        rows.append({"name": rec["encoder"], "base": rec["base"]["encoder"], "task": rec["task"],
                     "fold": rec["fold"], "trained_on": len(rec["trained_on"]), "best_epoch": rec["best_epoch"],
                     "folder": str(rec_path.parent)})
    return rows


ENCODERS.register_family(FT_PREFIX, finetuned_encoder, describe="<run>",
                         default_cfg=EncoderConfig(name=f"{FT_PREFIX}<run>", modality="visual", dim=0,
                                                   extra={"source": "afwpipe finetune"}),
                         source="<workspace>/finetune/<run>/model.safetensors")

__all__ = ["FT_PREFIX", "finetuned_encoder", "list_runs", "read_record"]
