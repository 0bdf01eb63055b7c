"""The one function that puts audio states onto video frames, on hand-made cases."""

import numpy as np
import pytest

from afwpipe.encoders import average_per_frame, frame_spans


def _ramp(n, d=1):
    """State j has value j in every dimension."""
    return np.repeat(np.arange(n, dtype=np.float32)[:, None], d, axis=1)


def test_constant_rate_frames_average_the_states_inside_their_span():
    # hop 0.1 s (centres 0.05, 0.15, ...), frames every 0.2 s: two states per frame
    out = average_per_frame(_ramp(10, 3), 0.1, np.array([0.0, 0.2, 0.4]))
    assert out.dtype == np.float32 and out.shape == (3, 3)
    np.testing.assert_allclose(out[:, 0], [0.5, 2.5, 4.5])


def test_variable_frame_rate_uses_the_given_times_and_nearest_state_for_empty_spans():
    # hop 1 s: centres 0.5, 1.5, ... Spans [0,1.2) [1.2,3.8) [3.8,4.3) [4.3,4.3+median(1.2,2.6,0.5)=5.5)
    out = average_per_frame(_ramp(8), 1.0, np.array([0.0, 1.2, 3.8, 4.3]))
    # frame 1 holds centres 1.5, 2.5, 3.5 (states 1..3); frame 2 holds none: its mid 4.05 is nearer
    # 4.5 (state 4) than 3.5; the last frame holds 4.5 only (5.5 is its open end)
    np.testing.assert_allclose(out[:, 0], [0.0, 2.0, 4.0, 4.0])


def test_duplicated_timestamp_takes_the_nearest_state():
    # frame 0 spans [0,0): nearest state 0; the last spans median(0, 2) = 1 s: [2,3) holds state 2
    out = average_per_frame(_ramp(6), 1.0, np.array([0.0, 0.0, 2.0]))
    np.testing.assert_allclose(out[:, 0], [0.0, 0.5, 2.0])


def test_frames_after_the_audio_ends_take_the_last_state():
    out = average_per_frame(_ramp(3), 1.0, np.array([0.0, 2.0, 4.0, 6.0]))
    np.testing.assert_allclose(out[:, 0], [0.5, 2.0, 2.0, 2.0])


def test_whisper_hop_at_25fps_with_a_start_offset():
    # 20 ms states, 40 ms frames starting at 0.5 s: frame i averages states 25+2i and 26+2i
    times = 0.5 + 0.04 * np.arange(10)
    out = average_per_frame(_ramp(100, 2), 0.02, times)
    np.testing.assert_allclose(out[:, 1], 25.5 + 2 * np.arange(10), atol=1e-5)


def test_last_frame_spans_the_median_duration_and_a_single_frame_takes_all_later_states():
    start, end = frame_spans(np.array([0.0, 0.04, 0.08, 0.2]))
    assert end[-1] == pytest.approx(0.24)
    np.testing.assert_allclose(average_per_frame(_ramp(3), 1.0, np.array([1.0]))[:, 0], [1.5])


def test_decreasing_times_and_empty_states_are_rejected():
    with pytest.raises(ValueError, match="non-decreasing"):
        average_per_frame(_ramp(4), 1.0, np.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="S >= 1"):
        average_per_frame(np.zeros((0, 4)), 1.0, np.array([0.0]))
