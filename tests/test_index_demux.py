"""``index`` counts frames by demuxing packets and decodes only where the container's counts disagree."""

import av
import numpy as np
import pytest

from afwpipe import video
from afwpipe.video import probe_video

from synth import make_video


def _decoded(path):
    """Frame count and times by decoding every frame with PyAV (the reference)."""
    with av.open(str(path)) as c:
        times = [f.time for f in c.decode(video=0)]
    return len(times), np.array(times, np.float64)


@pytest.fixture
def decodes(monkeypatch):
    """Paths ``probe_video`` decoded in full."""
    seen = []
    real = video._decode_times

    def spy(path):
        seen.append(path.name)
        return real(path)

    monkeypatch.setattr(video, "_decode_times", spy)
    return seen


@pytest.mark.parametrize("name", ["WolfgangLanger_Pexels", "single_face", "face_noface", "noface_face", "no_face"])
def test_sample_frames_counted_by_demux_equal_the_decoded_frames(sample_videos, decodes, name):
    n, times = _decoded(sample_videos[name])
    info = probe_video(sample_videos[name])
    assert info.n_frames == n and np.allclose(info.times, times - times[0]) and info.start_time == times[0]
    assert decodes == [] and info.warning is None  # no_face: 98 packets, 3 of them edit-list pre-roll


def test_cut_file_is_decoded_and_still_caught(tmp_path, decodes):
    full = make_video(tmp_path / "full.mp4", 60, size=(64, 48), faststart=True)
    assert probe_video(full).n_frames == 60 and decodes == []
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.7)])  # fewer packets than declared
    n, _ = _decoded(cut)
    info = probe_video(cut)
    assert decodes == ["cut.mp4"] and info.n_frames == n < 58 and info.declared_frames == 60
    assert info.warning and "probably truncated" in info.warning


def test_file_cut_inside_its_last_video_packet_is_decoded(tmp_path, decodes):
    full = make_video(tmp_path / "full.mp4", 60, size=(64, 48), faststart=True)
    with av.open(str(full)) as c:
        last = [p for p in c.demux(video=0) if p.size][-1]
        pos, size = last.pos, last.size
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: pos + size // 2])  # every packet demuxes, the last one short
    info = probe_video(cut)  # threaded decoding stops early without an error, as in test_video.py
    assert decodes == ["cut.mp4"] and info.n_frames < 58 and "probably truncated" in info.warning


def test_container_without_a_frame_count_is_decoded(tmp_path, decodes):
    p = make_video(tmp_path / "v.mkv", 9, size=(32, 24))
    with av.open(str(p)) as c:
        assert c.streams.video[0].frames == 0  # Matroska declares no frame count
    assert probe_video(p).n_frames == 9 and decodes == ["v.mkv"]
