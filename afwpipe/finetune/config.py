"""The settings of one fine-tune (``params.yaml`` section ``finetune``; every default here equals params.yaml).

A run is named ``<encoder>-<task>[-<fold>]`` (fold ``official`` is left out of the name), its folder is
``<workdir>/<dataset>/finetune/<run>/`` and the fine-tuned encoder it yields is ``ft_<run>``
(:mod:`afwpipe.finetune.runs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..config import FromParams
from ..encoders.finetuned import FT_PREFIX
from ..errors import AfwpipeError, TrainError
from ..folds import ALL, parse_fold
from ..labels import TRACKS
from ..store import safe_name

#: augmentation options and their defaults (timm ``create_transform``; ``scale``: random resized crop area range)
AUGMENT_DEFAULTS = {"scale": [0.8, 1.0], "hflip": 0.5, "color_jitter": 0.0, "auto_augment": None}


def run_name(encoder: str, task: str, fold) -> str:
    """``<encoder>-<task>`` for fold ``official``, else ``<encoder>-<task>-<fold>``; ``encoder`` made safe
    for a file name (``timm:x`` -> ``timm_x``)."""
    fold = parse_fold(fold)
    return "-".join([safe_name(encoder), task] + ([] if fold == "official" else [str(fold)]))


def parse_run(run: str) -> tuple[str, str, str | int]:
    """``"<encoder>-<task>[-<fold>]"`` -> ``(encoder, task, fold)``, e.g. ``"mini_xception-expr"`` ->
    ``("mini_xception", "expr", "official")``, ``"mae-au-0"`` -> ``("mae", "au", 0)``, ``"vit-expr-all"`` ->
    ``("vit", "expr", "all")`` (every labelled train+val video, :mod:`afwpipe.folds`).

    Raises:
        TrainError: the run does not end in ``-<task>`` (optionally followed by ``-<fold>``), the task a name of
            letters, digits and ``_`` (``au``, ``expr``, ``va`` or a task the dataset declares).
    """
    parts, fold = str(run).split("-"), "official"
    if len(parts) >= 3 and (parts[-1].isdigit() or parts[-1] == ALL):
        parts, fold = parts[:-1], parse_fold(parts[-1])
    if len(parts) < 2 or not parts[-1].isidentifier() or not parts[0]:
        raise TrainError(f"finetune run {run!r}: expected <encoder>-<task> with task one of {', '.join(TRACKS)} "
                         f"or a declared task (e.g. mini_xception-expr)")
    return "-".join(parts[:-1]), parts[-1], fold


@dataclass
class FinetuneConfig(FromParams):
    """Everything that decides a fine-tune (saved verbatim in its record).

    Attributes:
        encoder: the visual encoder to fine-tune: a registry name (``mae``, ``convnext``, ``timm:<id>``,
            ``mini_xception``) or a name of params ``extract.options`` (built with those options).
        task: ``au``, ``expr`` or ``va``: one linear output layer on the encoder's features (12 logits, 8 logits,
            2 values through tanh); on a dataset with declared tasks (``image_csv``, ``frame_csv``) the name of one
            of its frame tasks (one output per class or target; :mod:`afwpipe.finetune.tasks`), checked against
            the index when the run starts.
        fold: ``official`` (the task's official training videos) or a fold number (that fold's training
            videos): the videos the scored heads never validate on (:func:`afwpipe.folds.split_videos`).
        runs: the DVC foreach list of ``<encoder>-<task>[-<fold>]`` items (stages ``finetune@<item>``), not a
            setting of one run; ``encoder``, ``task`` and ``fold`` come from the item or the command line.
        weights: base weights: None (the encoder's default, as ``extract``), a file, or ``"random"``; params
            take it from ``extract.weights`` of the encoder.
        options: the encoder's build options (params ``extract.options.<encoder>``).
        epochs: passes over the training frames.
        batch_size: frames per optimizer step over all processes (global batch; Fuxi ABAW5: 512).
        accum_steps: micro-batches per optimizer step (gradient accumulation); ``batch_size`` must divide by
            ``accum_steps x processes``.
        lr: peak learning rate of AdamW (Fuxi ABAW5: 1e-4), reached after the warm-up, then cosine decay.
        weight_decay: AdamW weight decay (1-D parameters and biases excluded, timm's default grouping).
        layer_decay: layer-wise lr decay of timm's optimizer factory (BEiT / MAE fine-tuning: 0.65-0.75); null
            = off. Models without timm's ``group_matcher`` (mini_xception) train without it; the record says so.
        warmup: fraction of the optimizer steps spent in the linear warm-up.
        min_lr_ratio: the cosine schedule's final lr as a fraction of ``lr``.
        focal_gamma: focal γ of the AU / EXPR loss (:mod:`afwpipe.losses`); 0 = weighted BCE / CE.
        augment: timm ``create_transform`` options on the crops: ``scale`` (random resized crop area range),
            ``hflip`` (probability), ``color_jitter`` (strength, 0 = off), ``auto_augment`` (e.g.
            ``rand-m9-mstd0.5`` for RandAugment, null = off); ``null`` = no augmentation.
        frame_stride: use every n-th labelled frame (neighbouring video frames are near duplicates).
        max_steps: cap on optimizer steps per epoch (null = all frames), e.g. for a smoke run.
        block_frames: frames per contiguous crop read (one zarr read each).
        buffer_blocks: blocks whose frames are shuffled together (the shuffle buffer).
        workers: data loader worker processes (0: read in the training process).
        select_frac: fraction of the training videos held out to choose the epoch (:func:`afwpipe.folds.inner_split`).
        seed: seed of the head init, the frame order, the augmentation and the inner split.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (bf16 autocast on CUDA; under torchrun each process
            takes ``cuda:<LOCAL_RANK>``).
    """

    params_section: ClassVar[str] = "finetune"
    params_ignored: ClassVar[tuple[str, ...]] = ("runs",)  # the DVC foreach list
    params_error: ClassVar[type[AfwpipeError]] = TrainError

    encoder: str = "mini_xception"
    task: str = "expr"
    fold: str | int = "official"
    weights: str | None = None
    options: dict = field(default_factory=dict)
    epochs: int = 3
    batch_size: int = 32
    accum_steps: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.05
    layer_decay: float | None = 0.75
    warmup: float = 0.1
    min_lr_ratio: float = 0.01
    focal_gamma: float = 0.0
    augment: dict | None = field(default_factory=lambda: dict(AUGMENT_DEFAULTS))
    frame_stride: int = 2
    max_steps: int | None = None
    block_frames: int = 128
    buffer_blocks: int = 16
    workers: int = 0
    select_frac: float = 0.2
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        self.fold = parse_fold(self.fold)
        try:
            for k in ("epochs", "batch_size", "accum_steps", "frame_stride", "block_frames", "buffer_blocks",
                      "workers", "seed"):
                setattr(self, k, int(getattr(self, k)))
            for k in ("lr", "weight_decay", "warmup", "min_lr_ratio", "focal_gamma", "select_frac"):
                setattr(self, k, float(getattr(self, k)))
            self.layer_decay = None if self.layer_decay is None else float(self.layer_decay)
            self.max_steps = None if self.max_steps is None else int(self.max_steps)
        except (TypeError, ValueError) as e:
            raise TrainError(f"finetune: a numeric setting is not a number: {e}") from None
        if not str(self.task).isidentifier():
            raise TrainError(f"finetune: task must be one of {', '.join(TRACKS)} or a task the dataset declares "
                             f"(letters, digits and _), got {self.task!r}")
        if min(self.epochs, self.batch_size, self.accum_steps, self.frame_stride, self.block_frames,
               self.buffer_blocks) < 1 or self.workers < 0 or (self.max_steps is not None and self.max_steps < 1):
            raise TrainError("finetune: epochs, batch_size, accum_steps, frame_stride, block_frames, buffer_blocks "
                             "and max_steps must be >= 1, workers >= 0")
        if self.batch_size % self.accum_steps:
            raise TrainError(f"finetune: batch_size {self.batch_size} is not a multiple of accum_steps "
                             f"{self.accum_steps}")
        if not 0 <= self.warmup < 1 or not 0 <= self.min_lr_ratio <= 1:
            raise TrainError(f"finetune: warmup must lie in [0, 1) and min_lr_ratio in [0, 1] "
                             f"(warmup={self.warmup}, min_lr_ratio={self.min_lr_ratio})")
        self.options = dict(self.options or {})
        if self.augment is not None:
            unknown = set(self.augment) - set(AUGMENT_DEFAULTS)
            if unknown:
                raise TrainError(f"finetune.augment: unknown option(s) {', '.join(sorted(unknown))}; known: "
                                 f"{', '.join(AUGMENT_DEFAULTS)}")
            self.augment = {**AUGMENT_DEFAULTS, **self.augment}

    @property
    def run(self) -> str:
        """``<encoder>-<task>[-<fold>]``: the run folder's name (:func:`run_name`)."""
        return run_name(self.encoder, self.task, self.fold)

    def build_args(self) -> tuple[str, dict]:
        """(registry name, keyword options) of the base encoder, as :meth:`afwpipe.extract.ExtractConfig.build_args`."""
        opts = dict(self.options)
        return str(opts.pop("encoder", self.encoder)), opts

    @classmethod
    def from_params(cls, section, extract_section=None, **overrides) -> "FinetuneConfig":
        """The config from params ``finetune`` and the command line's ``overrides``; the base encoder's
        ``weights`` and ``options`` come from params ``extract.weights`` / ``extract.options`` of that encoder
        unless given. ``run`` (``<encoder>-<task>``, the DVC foreach item) sets ``encoder`` and ``task``."""
        run = overrides.pop("run", None)
        if run is not None:
            overrides["encoder"], overrides["task"], overrides["fold"] = parse_run(run)
        ext = dict(extract_section or {})
        enc = overrides.get("encoder") or (section or {}).get("encoder") or cls.encoder
        if overrides.get("weights") is None:
            overrides["weights"] = (ext.get("weights") or {}).get(enc)
        if overrides.get("options") is None:
            overrides["options"] = (ext.get("options") or {}).get(enc)
        return cls(**cls.params_kwargs(section, overrides))


__all__ = ["AUGMENT_DEFAULTS", "FT_PREFIX", "FinetuneConfig", "parse_run", "run_name"]
