"""describe: behaviour descriptions of every segment by a vision-language model, and text features from them.

Models: tiny random-weight Qwen2-VL and Idefics3 built offline from their config classes (tests/vlm_models.py),
loaded from their save_pretrained folders. Video: tests/data/speech_clip.mp4 (167 frames, 6.97 s). References:
segment frames from PyAV's own frame times; the images a segment shows from the crops the test wrote; the texts
from the model's own processor + generate on those images; text features from the tiny BERT run by hand.
"""

from __future__ import annotations

import json
import math

import av
import numpy as np
import pytest
import torch

from synth import complete_index
from afwpipe import describe, store, text
from afwpipe.crop_codec import CropCodec
from afwpipe.descriptions import read_descriptions
from afwpipe.errors import DescribeError, WeightsError

from conftest import REPO
from speech_workspace import CLIP, DATA
from test_text import _reference_word_embeddings, tiny_bert  # noqa: F401  (session fixture)
from vlm_models import FAMILIES, IDEFICS3_IMAGE_SEQ_LEN

SIZE = 32  # crop side
ABSENT = (2.0, 4.0)  # seconds without a face: segment 1 of 2 s segments


def _pyav_times():
    with av.open(str(CLIP)) as c:
        t = np.array([f.time for f in c.decode(video=0)], np.float64)
    return t - t[0]


TIMES = _pyav_times()
VIDEO_END = TIMES[-1] + np.median(np.diff(TIMES))


def _crops(n: int) -> np.ndarray:
    """A different noise image per frame, so the frames a segment shows can be told apart."""
    return np.random.default_rng(0).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


CROPS = _crops(len(TIMES))
PRESENT = ~((TIMES >= ABSENT[0]) & (TIMES < ABSENT[1]))


def _workspace(root, names=("clip", "again"), broken=(), short=()):
    """faces.zarr (times, present, lossless crops) and index.json for the clip under each name; a ``broken`` name
    points at a file that is not a video, a ``short`` one at a 6-frame video (fewer frames than detect found)."""
    ws = store.Workspace(root)
    root.mkdir(parents=True, exist_ok=True)
    videos = []
    for name in (*names, *broken, *short):
        path = DATA / "rotated_90.mp4" if name in short else CLIP
        if name in broken:
            path = root / f"{name}.mp4"
            path.write_bytes(b"not a video" * 100)
        g = store.begin_video(ws.faces, name)
        store.write_time_array(g, "times", TIMES, dims=("frame",))
        store.write_time_array(g, "present", PRESENT, dims=("frame",))
        CropCodec("zstd").create(g, len(TIMES), SIZE)[...] = CROPS
        store.mark_complete(g, n_frames=len(TIMES))
        videos.append({"name": name, "path": str(path)})
    ws.index.write_text(json.dumps(complete_index({"videos": videos})))
    return ws


@pytest.fixture(scope="session", params=sorted(FAMILIES))
def tiny_vlm(request, tmp_path_factory):
    """(family, save_pretrained folder) of each tiny model."""
    return request.param, FAMILIES[request.param](tmp_path_factory.mktemp(request.param))


def _cfg(folder, **kw):
    return describe.DescribeConfig(vlm="hf:tiny/vlm", weights=str(folder), device="cpu",
                                   **{"max_new_tokens": 6, "segment_s": 2.0, "frames_per_segment": 4, "batch_size": 1,
                                      **kw})


def _expected_shown(frames_per_segment=4, present=PRESENT):
    """Frame indices per 2 s segment: frames starting in it with a face, the centre of each of 4 equal parts."""
    out = []
    for k in range(math.ceil(VIDEO_END / 2.0)):
        idx = np.flatnonzero((TIMES >= 2.0 * k) & (TIMES < 2.0 * (k + 1)) & present)
        n = len(idx)
        out.append([int(idx[int((j + 0.5) * n / frames_per_segment)]) for j in range(frames_per_segment)]
                   if n > frames_per_segment else idx.tolist())
    return out


def _own_generate(folder, images, prompt, max_new_tokens):
    """The model's own recipe: its processor's chat template, processor, greedy generate, decode of new tokens."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    proc = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    msgs = [{"role": "user", "content": [{"type": "image"} for _ in images] + [{"type": "text", "text": prompt}]}]
    enc = proc(text=[proc.apply_chat_template(msgs, add_generation_prompt=True)], images=[list(images)],
               return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens)
    return proc.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def test_the_prompt_carries_the_segment_frames(tiny_vlm, tmp_path):
    family, folder = tiny_vlm
    ws = _workspace(tmp_path / "ws")
    worker = describe.DescribeWorker(ws, _cfg(folder))
    starts, ends, shown = worker.shown_frames("clip", TIMES)
    assert [s.tolist() for s in shown] == _expected_shown()
    frames = [CROPS[i] for i in shown[0]]
    enc = worker.vlm.inputs([frames], worker.cfg.prompt)
    image_token = worker.vlm.model.config.image_token_id
    n_image_tokens = int((enc["input_ids"] == image_token).sum())
    if family == "qwen2_vl":
        grid = enc["image_grid_thw"]
        assert len(grid) == 4  # one image per frame
        assert n_image_tokens == int(grid.prod(1).sum()) // 4  # 2x2 merged patches
    else:
        assert enc["pixel_values"].shape[:2] == (1, 4)
        assert n_image_tokens == 4 * IDEFICS3_IMAGE_SEQ_LEN
    # the pixels are those of the shown crops, in time order: the processor on the test's own crops agrees
    ref = worker.vlm.processor.image_processor(images=frames, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(enc["pixel_values"].reshape(ref.shape), ref)


def test_one_description_per_segment_with_its_times_equal_to_the_models_own_generate(tiny_vlm, tmp_path):
    _, folder = tiny_vlm
    ws = _workspace(tmp_path / "ws")
    cfg = _cfg(folder)
    summary = describe.run_describe(ws, cfg, progress=False)
    assert not summary.failures and [r.name for r in summary.results] == ["clip", "again"]
    got = read_descriptions(ws.descriptions(cfg.vlm), "clip")
    n = math.ceil(VIDEO_END / 2.0)
    assert len(got) == n == 4
    np.testing.assert_allclose([d.start for d in got], [0.0, 2.0, 4.0, 6.0])
    np.testing.assert_allclose([d.end for d in got], [2.0, 4.0, 6.0, VIDEO_END])
    shown = _expected_shown()
    assert shown[1] == [] and got[1].text == ""  # no face in 2-4 s: no model call
    for k in (0, 2, 3):
        assert got[k].text == _own_generate(folder, [CROPS[i] for i in shown[k]], cfg.prompt, 6)
    assert any(got[k].text for k in (0, 2, 3))
    attrs = store.open_store(ws.descriptions(cfg.vlm), "r")["clip"].attrs
    assert attrs["frames"] == shown and attrs["describe_config"]["vlm"]["weights"].startswith("sha256:")


def test_batched_segments_give_the_texts_of_one_at_a_time(tmp_path, tiny_vlm):
    _, folder = tiny_vlm
    ws = _workspace(tmp_path / "ws", names=("clip",))
    cfg = _cfg(folder)
    vlm = describe.DescribeWorker(ws, cfg).vlm
    segs = [CROPS[a:a + n] for a, n in ((0, 1), (10, 3), (50, 2), (90, 4), (120, 1))]  # prompts of unequal length
    batch = vlm.inputs(segs, cfg.prompt)
    assert (batch["attention_mask"] == 0).any()  # padded
    assert vlm.generate(batch, 6) == [_own_generate(folder, s, cfg.prompt, 6) for s in segs]


def test_rerun_skips_done_videos_and_another_option_redoes_them(tmp_path, tiny_vlm):
    _, folder = tiny_vlm
    ws = _workspace(tmp_path / "ws", names=("clip",))
    describe.run_describe(ws, _cfg(folder), progress=False)
    again = describe.run_describe(ws, _cfg(folder), progress=False)
    assert [(r.name, r.skipped) for r in again.results] == [("clip", True)]
    other = describe.run_describe(ws, _cfg(folder, max_new_tokens=3), progress=False)
    assert [(r.name, r.skipped) for r in other.results] == [("clip", False)]


def test_a_bad_video_is_reported_by_name_and_the_others_are_described(tmp_path, tiny_vlm):
    _, folder = tiny_vlm
    ws = _workspace(tmp_path / "ws", names=("clip",), broken=("broken",), short=("short",))
    cfg = _cfg(folder, input="frames", frame_side=64)
    summary = describe.run_describe(ws, cfg, progress=False)
    assert [r.name for r in summary.failures] == ["broken", "short"]
    assert "broken.mp4" in summary.failures[0].error and "rotated_90.mp4: decoded" in summary.failures[1].error
    listed = json.loads((ws.root / f"describe_failures_{ws.descriptions(cfg.vlm).stem}.json").read_text())
    assert [f["name"] for f in listed] == ["broken", "short"]
    got = read_descriptions(ws.descriptions(cfg.vlm), "clip")
    assert len(got) == 4 and all(d.text for d in got)  # frames input: every segment has frames
    assert store.open_store(ws.descriptions(cfg.vlm), "r")["clip"].attrs["frames"] == \
        _expected_shown(present=np.ones(len(TIMES), bool))
    assert not store.is_complete(ws.descriptions(cfg.vlm), "broken")


def test_text_source_descriptions_gives_each_segments_frames_its_description(tmp_path, tiny_vlm, tiny_bert):  # noqa: F811
    _, folder = tiny_vlm
    ws = _workspace(tmp_path / "ws", names=("clip",))
    describe.run_describe(ws, _cfg(folder), progress=False)
    descs = read_descriptions(ws.descriptions("hf:tiny/vlm"), "clip")
    cfg = text.TextConfig(encoder="text:tiny-bert", weights=str(tiny_bert), source="descriptions", vlm="hf:tiny/vlm")
    summary = text.run_text(ws, cfg, progress=False)
    assert not summary.failures
    g = store.open_store(ws.features("text:tiny-bert"), "r")["clip"]
    emb, present = g["emb"][...].astype(np.float32), g["present"][...]
    assert g.attrs["source"] == "descriptions" and g.attrs["vlm"] == "hf:tiny/vlm"
    for d in descs:
        frames = (TIMES >= d.start) & (TIMES < d.end)
        if not d.text:
            assert not present[frames].any() and not emb[frames].any()
            continue
        ref = _reference_word_embeddings(tiny_bert, d.text.split()).mean(0)
        assert present[frames].all()
        np.testing.assert_allclose(emb[frames], np.broadcast_to(ref, emb[frames].shape), atol=2e-2, rtol=1e-2)
    assert present.sum() == sum(((TIMES >= d.start) & (TIMES < d.end)).sum() for d in descs if d.text)


def test_segments_to_frames_hand_worked():
    emb = np.array([[1.0, 0.0], [0.0, 1.0]])
    # segments [0, 2) and [3, 4); frames start at 0, 1.5, 2, 2.5, 3, 3.9, 4
    out, present = text.segments_to_frames(emb, np.array([0.0, 3.0]), np.array([2.0, 4.0]),
                                           np.array([0.0, 1.5, 2.0, 2.5, 3.0, 3.9, 4.0]))
    np.testing.assert_array_equal(present, [True, True, False, False, True, True, False])
    np.testing.assert_array_equal(out, [[1, 0], [1, 0], [0, 0], [0, 0], [0, 1], [0, 1], [0, 0]])


def test_missing_weights_name_the_model_and_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("AFWPIPE_OFFLINE", "1")
    ws = _workspace(tmp_path / "ws", names=("clip",))
    with pytest.raises(WeightsError, match=r"hf:nobody/no-vlm: weights not found.*offline(?s:.*)"
                                           + str(tmp_path / "hub")):
        describe.run_describe(ws, describe.DescribeConfig(vlm="hf:nobody/no-vlm", device="cpu"), progress=False)
    with pytest.raises(WeightsError, match="does not exist"):
        describe.run_describe(ws, describe.DescribeConfig(vlm="hf:x/y", weights=str(tmp_path / "none")),
                              progress=False)


def test_bad_options_and_unknown_families_are_refused(tmp_path):
    with pytest.raises(DescribeError, match="describe.input"):
        describe.DescribeConfig(vlm="hf:x/y", input="audio")
    with pytest.raises(DescribeError, match="describe.frames_per_segment"):
        describe.DescribeConfig(vlm="hf:x/y", frames_per_segment=0)
    with pytest.raises(DescribeError, match="unknown vision-language model 'qwen'.*hf:<repo_id>"):
        describe.run_describe(_workspace(tmp_path / "ws", names=("clip",)), describe.DescribeConfig(vlm="qwen"))


def test_describe_cli_without_a_model_says_how_to_name_one(tmp_path):
    from click.testing import CliRunner

    from afwpipe.cli import main

    params = tmp_path / "params.yaml"
    params.write_text(f"workdir: {tmp_path}\ndescribe: {{vlms: {{}}}}\n")
    res = CliRunner().invoke(main, ["--params", str(params), "describe"])
    assert res.exit_code == 2 and "--vlm hf:<repo_id>" in res.output


def test_the_stage_refuses_a_store_name_that_is_not_the_vlms():
    from afwpipe.errors import ConfigError
    from stages.describe import run

    with pytest.raises(ConfigError, match="hf_Qwen_Qwen2.5-VL-3B-Instruct"):
        run({}, vlm="hf:Qwen/Qwen2.5-VL-3B-Instruct", store="qwen")


@pytest.mark.sample
@pytest.mark.slow
def test_afwpipe_describe_runs_on_the_sample(sample_workspace, tmp_path_factory):
    """`afwpipe describe` end to end on the five sample videos (detected by mtcnn), tiny Qwen2-VL: one description per
    2 s segment, a video without a face gets only empty texts, a rerun skips every video."""
    from click.testing import CliRunner

    from afwpipe.cli import main
    from vlm_models import tiny_qwen2_vl

    folder = tiny_qwen2_vl(tmp_path_factory.mktemp("qwen2_vl_sample"))
    ws = sample_workspace
    params = tmp_path_factory.mktemp("params") / "params.yaml"
    params.write_text(f"workdir: {ws.root.parent}\ndataset: {{name: sample}}\n")
    args = ["--params", str(params), "--manifest", str(REPO / "data_manifest.yaml"), "describe", "--vlm", "hf:tiny/vlm",
            "--weights", str(folder), "--device", "cpu", "--max-new-tokens", "4"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "5 videos processed, 0 already complete, 0 failed" in first.output
    for rec in ws.read_index().records:
        times = store.read_array(ws.faces, rec.name, "times")
        end = times[-1] + np.median(np.diff(times))
        got = read_descriptions(ws.descriptions("hf:tiny/vlm"), rec.name)
        assert len(got) == math.ceil(end / 2.0 - 1e-9) and got[-1].end == pytest.approx(end)
        present = store.read_array(ws.faces, rec.name, "present")
        if not present.any():
            assert all(d.text == "" for d in got), rec.name
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "0 videos processed, 5 already complete" in again.output
