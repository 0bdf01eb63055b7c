"""The fine-tune loop: frame-level training of a visual encoder with one linear output, the epoch chosen on
videos it does not train on, resumable, and the same under ``torchrun`` (DistributedDataParallel).

Videos: the training videos of the fold (:func:`afwpipe.folds.split_videos`: the official training set for
``official``, the fold's training videos for a fold number), split by :func:`afwpipe.folds.inner_split` into
``trained_on`` (fit the weights) and ``selected_on`` (choose the epoch: the task's validation score of the
linear output, as the heads score). With too few videos for an inner split the last epoch is kept and the
record says so.

Each epoch: AdamW (timm's factory, layer-wise lr decay when the model has timm's ``group_matcher``), cosine
schedule with warm-up per optimizer step, gradient accumulation over ``accum_steps`` micro-batches, bf16
autocast on CUDA. Under ``torchrun`` each process takes its slice of every global micro-batch
(:mod:`afwpipe.finetune.data`); outputs and labels are gathered (``torch.distributed.nn.all_gather``, which
carries gradients) so the loss is that of the global batch, and DDP averages the gradients: the weights
equal one process's with the same global batch up to float rounding. BatchNorm statistics stay per process.

Files of ``<ws>/finetune/<run>/``: ``checkpoint.pt`` after every epoch (weights, optimizer, schedule, RNG,
history; a rerun continues from it), ``best.safetensors`` / ``best_head.safetensors`` when the selection
score improves, and at the end ``model.safetensors`` (the encoder's torch model, state dict), ``head.safetensors``
(the linear output) and ``record.json``, written last: a run whose record has the same config, base weights
identity and videos is finished and skipped. The checkpoint is removed then.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .. import __version__, atomic, store
from ..crop_codec import crop_size
from ..device import autocast, resolve_device
from ..encoders import create_encoder
from ..encoders.weights import sha256_path
from ..errors import TrainError
from ..folds import inner_split, split_videos
from .config import FinetuneConfig
from .data import CropBuffers, epoch_order, local_batches, make_augment, plan_frames, sequential_batches
from .model import FinetuneNet, build_optimizer, build_scheduler
from .tasks import FinetuneTask, finetune_task

log = logging.getLogger(__name__)

RECORD = "record.json"
CHECKPOINT = "checkpoint.pt"
#: config fields left out of the run's identity: ``workers`` never changes the weights; ``device`` is the
#: place the recipe ran (``cuda`` and ``cuda:0`` under torchrun are one run)
NEUTRAL = ("workers", "device")


@dataclass
class FinetuneResult:
    """What :func:`finetune` did: the run folder, its record, whether it was skipped as finished, and (when it ran
    here) the chosen epoch's encoder state dict."""

    run_dir: Path
    record: dict
    skipped: bool = False
    state: dict | None = None  # the chosen epoch's encoder weights as trained (CPU tensors), when it ran here

    def line(self) -> str:
        r = self.record
        if self.skipped:
            return f"finetune {r['run']}: finished before (record {self.run_dir / RECORD}); skipped"
        per_epoch = np.mean([e["seconds"] for e in r["epochs"]])
        chosen = (f"selection score {r['best_score']:.4f}" if r["selected_on"] else "the last: no video chose")
        return (f"finetune {r['run']}: {len(r['trained_on'])} videos trained on, {len(r['selected_on'])} chose the "
                f"epoch; {r['frames_per_epoch']} frames/epoch, {len(r['epochs'])} epochs ({per_epoch:.1f} s each), "
                f"kept epoch {r['best_epoch']} ({chosen}) -> {self.run_dir}; "
                f"encoder ft_{r['run']}")


def _config_key(cfg: FinetuneConfig) -> dict:
    return json.loads(json.dumps({k: v for k, v in asdict(cfg).items() if k not in NEUTRAL}))


def _dist() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str) -> str:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment): join the process group (NCCL on CUDA, gloo
    on CPU) and return this process's device (``cuda:<LOCAL_RANK>`` on CUDA). Otherwise ``device`` unchanged."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        cuda = device.startswith("cuda")
        dist.init_process_group("nccl" if cuda else "gloo")
        if cuda:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(device)
    return device


def faces_identities(ws: store.Workspace, names: list[str]) -> dict:
    """video name -> the detect identity of its crops (``faces.zarr/<name>`` attribute ``identity``: detector,
    crop size, crop codec; JSON-normalised), so a fine-tune finished or checkpointed on other crops is redone."""
    root = store.open_store(ws.faces, "r")
    return json.loads(json.dumps({n: root[n].attrs.get("identity") if n in root else None for n in names}))


def _save_tensors(path: Path, sd: dict) -> None:
    from safetensors.torch import save_file

    with atomic.replacing(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in sd.items()}, str(tmp))


def _gather(t: torch.Tensor, differentiable: bool) -> torch.Tensor:
    """All processes' ``t`` concatenated in rank order (the global batch)."""
    import torch.distributed as dist
    import torch.distributed.nn.functional as dnn

    if differentiable:
        with warnings.catch_warnings():  # deprecated for a private successor (_functional_collectives); kept
            warnings.simplefilter("ignore", FutureWarning)
            return torch.cat(dnn.all_gather(t))
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


@torch.no_grad()
def selection_score(net: FinetuneNet, ws: store.Workspace, plan, task: FinetuneTask, device, batch_size: int) -> dict:
    """The task's validation metrics (:meth:`~afwpipe.finetune.tasks.FinetuneTask.score`) of the linear output on
    every planned frame of ``plan`` (no augmentation)."""
    was = net.training
    net.eval()
    preds = {n: [] for n in plan.names}
    for v, _, crops in sequential_batches(ws, plan, batch_size):
        with autocast(device):
            out = net(torch.from_numpy(crops).to(device)).float()
        preds[plan.names[v]].append(task.predictions(out).cpu().numpy())
    net.train(was)
    names = [n for n in plan.names if preds[n]]
    return task.score({n: np.concatenate(preds[n]) for n in names},
                      {n: plan.labels[plan.names.index(n)] for n in names})


def finetune(ws: store.Workspace, cfg: FinetuneConfig, progress: bool = True, after_epoch=None) -> FinetuneResult:
    """Fine-tune ``cfg.encoder`` on ``cfg.task`` (module docstring); resumes a killed run, skips a finished one.

    Args:
        ws: workspace with ``index.json``, ``labels.zarr``, ``faces.zarr``.
        cfg: the run's settings.
        progress: log one line per epoch.
        after_epoch: called with the epoch number after its checkpoint is written (tests stop a run here).

    Raises:
        TrainError: the task is no frame task of the index, ``focal_gamma`` on a declared task, no usable frame,
            fewer frames than one batch, a checkpoint of another config in the run folder, a non-finite loss, a
            non-visual encoder.
        EncoderError, WeightsError: the base encoder cannot be built.
    """
    rank, world = _dist()
    out_dir = ws.finetune(cfg.run)
    record_path = out_dir / RECORD
    key = _config_key(cfg)
    device = torch.device(resolve_device(cfg.device))
    index = ws.read_index()
    task = finetune_task(index, cfg.task)
    if task.spec is not None and cfg.focal_gamma:
        raise TrainError(f"finetune: focal_gamma is an AU / EXPR option; task {task.name} is declared by the dataset")
    train_names, _ = split_videos(index, (cfg.task,), cfg.fold)
    fit, select = inner_split(index, train_names, cfg.seed, cfg.select_frac)
    plan = plan_frames(ws, fit, task, cfg.frame_stride)
    sel_plan = plan_frames(ws, select, task, cfg.frame_stride) if select else None

    micro = cfg.batch_size // cfg.accum_steps
    if micro % world:
        raise TrainError(f"finetune: the micro-batch {micro} (batch_size {cfg.batch_size} / accum_steps "
                         f"{cfg.accum_steps}) does not split over {world} processes")
    steps = plan.n_frames // cfg.batch_size
    if cfg.max_steps:
        steps = min(steps, cfg.max_steps)
    if steps < 1:
        raise TrainError(f"finetune {cfg.run}: {plan.n_frames} usable frames, fewer than one batch of "
                         f"{cfg.batch_size}; lower batch_size or frame_stride")

    torch.manual_seed(cfg.seed)
    name, options = cfg.build_args()
    encoder = create_encoder(name, weights=cfg.weights, device="cpu", **options)
    if encoder.cfg.modality != "visual" or not isinstance(getattr(encoder, "model", None), torch.nn.Module):
        raise TrainError(f"finetune: {name} is not a visual encoder with a torch model ({encoder!r})")
    base_weights = encoder.cfg.weights
    faces = faces_identities(ws, fit + select)
    if record_path.is_file():  # finished: the same config, base weights, videos and crops
        rec = json.loads(record_path.read_text())
        if (rec.get("config_key"), rec["base"].get("weights"), rec.get("trained_on"), rec.get("selected_on"),
                rec.get("faces")) == (key, base_weights, fit, select, faces):
            return FinetuneResult(out_dir, rec, skipped=True)
        log.warning("finetune %s: %s holds another config, base weights, videos or crops (detect identity); "
                    "fine-tuning again", cfg.run, record_path)
    net = FinetuneNet(encoder, task).to(device)
    encoder.device = device
    cw = task.class_weights(plan.all_labels())
    cw = None if cw is None else torch.as_tensor(cw, device=device)
    opt, layer_note = build_optimizer(net, cfg.lr, cfg.weight_decay, cfg.layer_decay)
    sched = build_scheduler(opt, steps * cfg.epochs, cfg.lr, cfg.warmup, cfg.min_lr_ratio)
    augment = make_augment(cfg.augment, crop_size(store.open_store(ws.faces, "r")[plan.names[0]]["crops"]))

    history, best, step, first_epoch, best_state = [], None, 0, 1, None
    ckpt_path = out_dir / CHECKPOINT
    if ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ck.get("config_key") != key or ck.get("videos") != [fit, select] or ck.get("faces", faces) != faces:
            raise TrainError(f"{ckpt_path}: a checkpoint of another fine-tune config, other videos or other crops; delete it "
                             f"(or the folder) to start over, or rerun with the config it was written with")
        net.load_state_dict(ck["net"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        torch.set_rng_state(ck["rng"])
        history, best, step, first_epoch = ck["history"], ck["best"], ck["step"], ck["epoch"] + 1
        log.warning("finetune %s: resuming after epoch %d from %s", cfg.run, ck["epoch"], ckpt_path)
    out_dir.mkdir(parents=True, exist_ok=True)

    model = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    share = micro // world
    for epoch in range(first_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        order = epoch_order(plan, cfg.seed, epoch, cfg.block_frames, cfg.buffer_blocks)
        ds = CropBuffers(ws, plan, order, rank, world, micro, 0, steps * cfg.batch_size, augment, cfg.seed, epoch)
        loader = torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False, num_workers=cfg.workers,
                                             pin_memory=device.type == "cuda",
                                             generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        net.train()
        total, n = 0.0, 0
        for i, (x, y) in enumerate(local_batches(loader, share)):
            last = (i + 1) % cfg.accum_steps == 0
            sync = model.no_sync() if world > 1 and not last else contextlib.nullcontext()
            with sync:
                with autocast(device):
                    out = model(x.to(device, non_blocking=True))
                out, y = out.float(), y.to(device)
                if world > 1:
                    out, y = _gather(out, True), _gather(y, False)
                loss = task.loss(out, y, cw, cfg.focal_gamma)
                if not torch.isfinite(loss):
                    raise TrainError(f"finetune {cfg.run}, epoch {epoch}: loss became {loss.item()}; lower lr "
                                     f"(now {cfg.lr})")
                (loss / cfg.accum_steps).backward()
            total, n = total + float(loss.detach()), n + 1
            if last:
                opt.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                sched.step_update(step)
        row = {"epoch": epoch, "loss": total / max(1, n), "steps": step, "seconds": time.perf_counter() - t0}
        if sel_plan is not None:
            val = selection_score(net, ws, sel_plan, task, device, micro) if rank == 0 else None
            if world > 1:
                import torch.distributed as dist
                box = [val]
                dist.broadcast_object_list(box, src=0)
                val = box[0]
            row.update(val)
        history.append(row)
        better = best is None or (sel_plan is not None and row["score"] > best["score"]) or sel_plan is None
        if better:
            best = {"epoch": epoch, "score": row.get("score")}
            best_state = {k: v.detach().cpu().clone() for k, v in net.backbone.state_dict().items()}
        if rank == 0:
            if better:
                _save_tensors(out_dir / "best.safetensors", net.backbone.state_dict())
                _save_tensors(out_dir / "best_head.safetensors", net.head.state_dict())
            with atomic.replacing(ckpt_path) as tmp:
                torch.save({"config_key": key, "videos": [fit, select], "faces": faces, "epoch": epoch, "step": step,
                            "net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                            "rng": torch.get_rng_state(), "history": history, "best": best}, tmp)
        if progress:
            log.warning("finetune %s: epoch %d loss %.4f%s (%.1f s)", cfg.run, epoch, row["loss"],
                        f" selection score {row['score']:.4f}" if "score" in row else "", row["seconds"])
        if world > 1:
            import torch.distributed as dist
            dist.barrier()
        if after_epoch is not None:
            after_epoch(epoch)

    record = {"run": cfg.run, "encoder": f"ft_{cfg.run}",
              "base": {"encoder": name, "options": options, "weights": base_weights,
                       "config": encoder.cfg.to_dict()},
              "task": cfg.task, "fold": cfg.fold, "trained_on": fit, "selected_on": select, "faces": faces,
              "selection": ("best selection score on selected_on" if select else
                            "last epoch: too few training videos for an inner split (nothing chose the epoch)"),
              "best_epoch": best["epoch"], "best_score": best["score"], "epochs": history,
              "frames": plan.n_frames, "frames_per_epoch": steps * cfg.batch_size, "world_size": world,
              "layer_decay": layer_note, "config": asdict(cfg), "config_key": key, "afwpipe_version": __version__}
    if rank == 0:
        os.replace(out_dir / "best.safetensors", out_dir / "model.safetensors")
        os.replace(out_dir / "best_head.safetensors", out_dir / "head.safetensors")
        record["weights"] = f"sha256:{sha256_path(out_dir / 'model.safetensors')}"
        atomic.write_json(record_path, record)
        ckpt_path.unlink(missing_ok=True)
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
    if best_state is None:  # resumed after the chosen epoch: the state is the saved one
        from safetensors.torch import load_file
        best_state = load_file(str(out_dir / "model.safetensors"))
    return FinetuneResult(out_dir, json.loads(record_path.read_text()), state=best_state)


def main(ws: store.Workspace, cfg: FinetuneConfig, *, progress: bool = True) -> FinetuneResult:
    """The finetune step as ``afwpipe finetune`` and ``python -m stages.finetune`` run it (also under torchrun):
    :func:`finetune`, then its one-line summary printed (process 0)."""
    cfg.device = init_distributed(resolve_device(cfg.device))
    result = finetune(ws, cfg, progress=progress)
    if _dist()[0] == 0:
        print(result.line())
    return result


__all__ = ["CHECKPOINT", "RECORD", "FinetuneResult", "finetune", "init_distributed", "main", "selection_score"]
