"""Fine-tune a visual encoder of the registry frame by frame on the stored face crops, then cache it as the
encoder ``ft_<run>`` (:mod:`afwpipe.encoders.finetuned`): the first stage of the ABAW winners' recipes
(docs/finetune.md).

``config`` (the settings, params ``finetune``), ``data`` (which frames, their order, the block reader),
``tasks`` (what the linear output learns: an Aff-Wild2 track or a declared frame task; its size, loss and score),
``model`` (encoder + linear output, timm optimizer and schedule), ``loop`` (training, epoch choice,
resume, DistributedDataParallel).
"""

from .config import FinetuneConfig, parse_run, run_name
from .loop import FinetuneResult, finetune, main

__all__ = ["FinetuneConfig", "FinetuneResult", "finetune", "main", "parse_run", "run_name"]
