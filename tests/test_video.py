import numpy as np
import pytest

from afwpipe.errors import VideoError
from afwpipe.video import iter_frames, probe_video, read_audio, rotate_frame, truncation_warning

from synth import make_video

SAMPLE_FRAMES = {"WolfgangLanger_Pexels": 472, "single_face": 72, "face_noface": 169, "noface_face": 169,
                 "no_face": 95}


@pytest.mark.sample
def test_sample_decoded_frame_counts_and_vfr(sample_videos):
    infos = {k: probe_video(p) for k, p in sample_videos.items()}
    assert {k: i.n_frames for k, i in infos.items()} == SAMPLE_FRAMES
    assert infos["face_noface"].vfr and infos["noface_face"].vfr and not infos["single_face"].vfr
    t = infos["single_face"].times
    assert t.shape == (72,) and t[0] == 0 and np.allclose(np.diff(t), 1 / 30)
    assert all(np.all(np.diff(i.times) > 0) for i in infos.values())
    assert infos["WolfgangLanger_Pexels"].audio_rate == 48000
    # no_face.mp4 declares 98 frames (3 edit-list pre-roll packets) and decodes 95: not truncated
    assert infos["no_face"].declared_frames == 98 and all(i.warning is None for i in infos.values())


def test_streamed_frames_match_probe(tmp_path):
    p = make_video(tmp_path / "v.mp4", 7, size=(32, 24))
    frames = list(iter_frames(p))
    assert [i for i, _, _ in frames] == list(range(7))
    assert frames[0][2].shape == (24, 32, 3) and frames[0][2].dtype == np.uint8
    assert probe_video(p).n_frames == 7


def test_audio_is_resampled_to_16k_mono(tmp_path):
    p = make_video(tmp_path / "v.mp4", 25, fps=25)
    wave = read_audio(p, 16000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 16000) < 2048  # one second, give or take one AAC frame
    spectrum = np.abs(np.fft.rfft(wave[2048:10240]))
    assert abs(np.argmax(spectrum) * 16000 / 8192 - 1000) < 10  # the 1 kHz tone survives


def test_video_without_audio(tmp_path):
    p = make_video(tmp_path / "v.avi", 5, audio=False)
    assert read_audio(p) is None and not probe_video(p).has_audio


def test_truncated_video_is_reported_by_name(tmp_path):
    good = make_video(tmp_path / "good.mp4", 30, size=(64, 48))
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(good.read_bytes()[: 1200])
    with pytest.raises(VideoError, match="cut.mp4"):
        probe_video(bad)


def test_garbage_and_missing_files_are_reported_by_name(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoError, match="junk.mp4: cannot open"):
        probe_video(junk)
    with pytest.raises(VideoError, match="nope.mp4: video file does not exist"):
        probe_video(tmp_path / "nope.mp4")


def test_rotate_frame_turns_counter_clockwise():
    img = np.zeros((2, 3, 3), np.uint8)
    img[0, 2] = 255  # top-right
    r = rotate_frame(img, 90)
    assert r.shape == (3, 2, 3) and r[0, 0, 0] == 255  # top-right -> top-left after 90° CCW
    assert rotate_frame(img, 0) is img


def test_cut_tail_decodes_short_without_error_and_is_flagged(tmp_path):
    # moov atom at the front (faststart): the cut file still opens and declares all 60 frames
    full = make_video(tmp_path / "full.mp4", 60, size=(64, 48), faststart=True)
    info_full = probe_video(full)
    assert info_full.n_frames == 60 and info_full.declared_frames == 60 and info_full.warning is None
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.7)])
    info = probe_video(cut)  # threaded decoding ends early without an error
    assert 2 <= info.n_frames < 58 and info.declared_frames == 60 and info.declared_duration == 2.4
    assert info.warning == (f"decoded {info.n_frames} frames ({info.n_frames / 25:.2f} s) but the container "
                            "declares 60 (2.40 s): the file is probably truncated")
    assert info.to_dict()["warning"] == info.warning


@pytest.mark.parametrize("decoded, declared, seconds, declared_seconds, short", [
    (97, 100, None, 0, True), (98, 100, None, 0, False), (99, 100, None, 0, False), (48, 50, None, 0, True),
    (49, 50, None, 0, False), (10, 0, None, 0, False), (4, 5, None, 0, False), (3, 5, None, 0, True),
    (95, 98, 3.958, 3.945, False),  # the sample's no_face.mp4: 3 edit-list pre-roll packets, full duration
    (39, 60, 1.56, 2.4, True), (39, 60, float("nan"), 2.4, True)])
def test_truncation_rule(decoded, declared, seconds, declared_seconds, short):
    # short: below 98 % of the declared count, at least 2 frames missing, and below 98 % of a known duration
    assert (truncation_warning(decoded, declared, seconds, declared_seconds) is not None) == short


def test_declared_length_is_the_streams_frame_count_when_the_container_gives_one(tmp_path):
    from fractions import Fraction
    from types import SimpleNamespace

    import av

    from afwpipe.video import declared_length

    p = make_video(tmp_path / "v.mp4", 7, size=(32, 24), fps=25)  # 7 frames written: MP4 declares nb_frames 7
    with av.open(str(p)) as c:
        vs = c.streams.video[0]
        # a frame rate that disagrees with the duration (a VFR file's average): the count must not come
        # from seconds x fps (0.28 s x 30 = 8.4 -> 8)
        frames, seconds = declared_length(c, vs, 30.0)
    assert frames == 7 and seconds == pytest.approx(7 / 25)
    # a container that declares no frame count (MKV, some WebM): seconds x fps
    stream = SimpleNamespace(frames=0, duration=4520, time_base=Fraction(1, 1000))
    assert declared_length(SimpleNamespace(duration=None), stream, 25.0) == (113, 4.52)
