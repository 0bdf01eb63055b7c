"""``afwpipe finetune``: frames used, learning on a planted signal, weights that reload bit for bit in ``extract``,
``trained_on`` and the optimistic flag, resume after a kill, and DDP on two gloo processes (CPU, fixed seeds).

The model is timm's random-weight ``test_vit`` (0.3 M parameters, no BatchNorm) on 32-px crops of a synthetic
workspace (tests/ft_workspace.py); each fine-tune takes a few seconds on one thread."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from afwpipe import store
from afwpipe.extract import ExtractConfig, run_extract
from afwpipe.finetune import FinetuneConfig, finetune
from afwpipe.finetune.data import epoch_order, plan_frames
from afwpipe.folds import split_videos
from afwpipe.postprocess import System, flag_fitted_features
from afwpipe.readers import ZarrFeatures
from afwpipe.train import features_trained_on

from ft_workspace import TINY, TWO, VIDEOS, make_workspace

RUN = "vit-expr"


def _cfg(**kw) -> FinetuneConfig:
    base = dict(encoder="vit", task="expr", options=TINY, weights="random", epochs=3, batch_size=16, lr=1e-3,
                warmup=0.0, frame_stride=1, augment=None, device="cpu", block_frames=16, buffer_blocks=4)
    return FinetuneConfig(**{**base, **kw})


@pytest.fixture
def ws(tmp_path, one_torch_thread):
    return make_workspace(tmp_path / "ws", VIDEOS)


def _weights(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_frames_without_a_face_or_a_valid_label_are_skipped(ws):
    plan = plan_frames(ws, ["tr0", "va0"], "expr", stride=1)
    # ft_workspace: 60 frames, the last 5 without a face, every 10th label invalid
    expected = [i for i in range(60) if i < 55 and i % 10 != 0]
    assert [f.tolist() for f in plan.frames] == [expected, expected]
    assert plan_frames(ws, ["tr0"], "expr", stride=3).frames[0].tolist() == expected[::3]
    order = epoch_order(plan, seed=0, epoch=1, block_frames=16, buffer_blocks=2)
    got = sorted(zip(order.video.tolist(), order.pos.tolist()))
    assert got == [(v, p) for v in range(2) for p in range(len(expected))]  # every frame once per epoch
    for start, end in order.buffers:  # a buffer holds the frames of at most buffer_blocks blocks
        blocks = {(v, plan.frames[v][p] // 16) for v, p in zip(order.video[start:end], order.pos[start:end])}
        assert len(blocks) <= 2


def test_loss_falls_on_frames_with_a_planted_signal(ws):
    rec = finetune(ws, _cfg(epochs=4), progress=False).record
    losses = [e["loss"] for e in rec["epochs"]]
    # chance with balanced class weights on two classes is ln 2; the planted signal allows far less
    assert losses[-1] < 0.1 < math.log(2) < losses[0] + 0.5
    assert losses[-1] < losses[0] / 3
    per_class = rec["epochs"][-1]["expr"]["per_class"]  # on the held-out video that chose the epoch
    assert per_class["Neutral"] > 0.9 and per_class["Anger"] > 0.9


def test_saved_weights_reload_bit_for_bit_in_extract(ws):
    import timm

    result = finetune(ws, _cfg(epochs=2), progress=False)
    assert not run_extract(ws, ExtractConfig(f"ft_{RUN}", device="cpu"), progress=False).failures
    assert ws.features(f"ft_{RUN}").name == f"ft_{RUN}.zarr" and not ws.features("vit").exists()
    saved = _weights(result.run_dir / "model.safetensors")
    assert saved.keys() == result.state.keys()
    assert all(torch.equal(saved[k], result.state[k]) for k in saved)
    # an independent forward: timm's model with the trained state, the crops scaled and normalised by hand
    model = timm.create_model("test_vit", pretrained=False, num_classes=0, img_size=32).eval()
    model.load_state_dict(result.state)
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(1, 3, 1, 1)
    crops = torch.from_numpy(store.read_array(ws.faces, "va0", "crops")).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        want = model((crops - mean) / std).numpy().astype(np.float16)
    got = store.read_array(ws.features(f"ft_{RUN}"), "va0", "emb")
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=2e-3, atol=2e-3)
    cfg = store.open_store(ws.features(f"ft_{RUN}"), "r")["va0"].attrs["encoder_config"]
    assert cfg["name"] == f"ft_{RUN}" and cfg["weights"] == result.record["weights"]
    assert cfg["finetune"]["trained_on"] == result.record["trained_on"]
    assert cfg["finetune"]["record"].startswith("sha256:")


def test_trained_on_follows_the_fold_and_scored_videos_are_flagged_optimistic(ws):
    index = ws.read_index()
    for fold in ("official", 0):
        rec = finetune(ws, _cfg(fold=fold, epochs=1), progress=False).record
        train, val = split_videos(index, ("expr",), fold)
        assert sorted(rec["trained_on"] + rec["selected_on"]) == train
        assert not set(rec["trained_on"]) & set(rec["selected_on"])
        assert not set(rec["trained_on"] + rec["selected_on"]) & set(val)
    # the fold-0 encoder's store identity reaches the head's metrics and the postprocess flag
    run = "vit-expr-0"
    assert not run_extract(ws, ExtractConfig(f"ft_{run}", device="cpu"), progress=False).failures
    names = [r.name for r in index.records]
    fitted = features_trained_on({f"ft_{run}": ZarrFeatures(ws, [f"ft_{run}"]).identity(f"ft_{run}", names)})
    trained_on = rec["trained_on"]
    assert fitted == {f"ft_{run}": trained_on}
    head = ws.models / "expr-tmf-0"
    head.mkdir(parents=True)
    (head / "metrics.json").write_text(json.dumps({"features_trained_on": fitted}))
    honest = System("expr", "0", ["va0"], ["va0"], {}, heads=["expr-tmf-0"])
    leaky = System("expr", "official", [trained_on[0], "va1"], [trained_on[0], "va1"], {}, heads=["expr-tmf-0"])
    flag_fitted_features(ws, [honest, leaky])
    assert not honest.optimistic
    assert leaky.optimistic and f"ft_{run}" in leaky.optimistic_reason and trained_on[0] in leaky.optimistic_reason


class _Killed(Exception):
    pass


def test_resume_after_a_kill_gives_the_weights_of_an_uninterrupted_run(tmp_path, one_torch_thread):
    aug = {"scale": [0.7, 1.0], "hflip": 0.5, "color_jitter": 0.0, "auto_augment": None}
    whole = make_workspace(tmp_path / "whole", TWO)
    finetune(whole, _cfg(augment=aug), progress=False)
    cut = make_workspace(tmp_path / "cut", TWO)

    def kill(epoch):
        if epoch == 2:
            raise _Killed

    with pytest.raises(_Killed):
        finetune(cut, _cfg(augment=aug), progress=False, after_epoch=kill)
    run_dir = cut.finetune(RUN)
    assert (run_dir / "checkpoint.pt").is_file() and not (run_dir / "record.json").exists()
    resumed = finetune(cut, _cfg(augment=aug), progress=False)
    assert [e["epoch"] for e in resumed.record["epochs"]] == [1, 2, 3] and resumed.record["best_epoch"] == 3
    for f in ("model.safetensors", "head.safetensors"):
        a, b = _weights(whole.finetune(RUN) / f), _weights(run_dir / f)
        assert all(torch.equal(a[k], b[k]) for k in a), f
    assert not (run_dir / "checkpoint.pt").exists()
    assert finetune(cut, _cfg(augment=aug), progress=False).skipped  # a finished run is skipped


def test_a_finished_run_is_redone_when_its_crops_change(tmp_path, one_torch_thread):
    ws = make_workspace(tmp_path / "w", TWO)
    cfg = _cfg(epochs=1)
    first = finetune(ws, cfg, progress=False)
    assert not first.skipped and finetune(ws, cfg, progress=False).skipped
    # detect rewrote tr1's crops with another codec (as `dvc repro` does after detect.crop_codec changes)
    store.open_store(ws.faces, "r+")["tr1"].attrs["identity"] = {"detector": "mtcnn", "crop_codec": "jpeg90"}
    again = finetune(ws, cfg, progress=False)
    assert not again.skipped
    assert again.record["faces"]["tr1"] == {"detector": "mtcnn", "crop_codec": "jpeg90"}
    assert finetune(ws, cfg, progress=False).skipped


def _ddp_worker(rank: int, world: int, root: str, init: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        aug = {"scale": [0.7, 1.0], "hflip": 0.5, "color_jitter": 0.0, "auto_augment": None}
        finetune(store.Workspace(root), _cfg(augment=aug, epochs=2), progress=False)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_give_the_weights_of_one_process_with_the_same_global_batch(tmp_path, one_torch_thread):
    import torch.multiprocessing as mp

    aug = {"scale": [0.7, 1.0], "hflip": 0.5, "color_jitter": 0.0, "auto_augment": None}
    one = make_workspace(tmp_path / "one", TWO)
    finetune(one, _cfg(augment=aug, epochs=2), progress=False)
    two = make_workspace(tmp_path / "two", TWO)
    mp.spawn(_ddp_worker, args=(2, str(two.root), f"file://{tmp_path / 'rendezvous'}"), nprocs=2, join=True)
    rec = json.loads((two.finetune(RUN) / "record.json").read_text())
    assert rec["world_size"] == 2 and rec["best_epoch"] == 2
    steps, lr = rec["epochs"][-1]["steps"], rec["config"]["lr"]
    for f in ("model.safetensors", "head.safetensors"):
        a, b = _weights(one.finetune(RUN) / f), _weights(two.finetune(RUN) / f)
        for k in a:
            if k.endswith("attn.qkv.bias"):
                # the key bias's exact gradient is zero (softmax is shift-invariant), so its float-rounding
                # gradient differs between one and two processes and Adam turns that noise into steps of at
                # most ~lr each: bounded by lr x steps, not by float tolerance
                d = a[k].shape[0] // 3
                assert (a[k][d:2 * d] - b[k][d:2 * d]).abs().max() <= lr * steps
                a[k], b[k] = torch.cat([a[k][:d], a[k][2 * d:]]), torch.cat([b[k][:d], b[k][2 * d:]])
            torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-6, msg=f"{f}:{k}")


@pytest.mark.parametrize("run, parsed", [
    ("mini_xception-expr", ("mini_xception", "expr", "official")),
    ("mae-au-0", ("mae", "au", 0)),
    ("vit-expr-all", ("vit", "expr", "all")),  # the whole-dataset fold (an image_csv set without val images)
    ("timm_vit_small-valence-3", ("timm_vit_small", "valence", 3)),
])
def test_run_names_parse_into_encoder_task_and_fold(run, parsed):
    from afwpipe.finetune.config import parse_run

    assert parse_run(run) == parsed


@pytest.mark.parametrize("run", ["expr", "mae-", "-expr", "mae-expr-first-x!"])
def test_bad_run_names_are_errors(run):
    from afwpipe.errors import TrainError
    from afwpipe.finetune.config import parse_run

    with pytest.raises(TrainError, match="expected <encoder>-<task>"):
        parse_run(run)
