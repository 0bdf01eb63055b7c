"""Completeness of a video group: written last, and only in the current store layout."""

import json

import numpy as np

from afwpipe import store


def _attrs(path, name):
    return json.loads((path / name / "zarr.json").read_text())["attributes"]


def test_a_video_is_complete_only_after_mark_complete_and_in_the_current_layout(tmp_path):
    path = tmp_path / "faces.zarr"
    g = store.begin_video(path, "v", {"video": "v.mp4"})
    store.write_time_array(g, "present", np.ones(4, bool))
    assert not store.is_complete(path, "v") and store.complete_names(path) == []
    store.mark_complete(g, frames=4)
    assert store.is_complete(path, "v") and store.complete_names(path) == ["v"]
    assert _attrs(path, "v")["layout"] == store.LAYOUT and _attrs(path, "v")["frames"] == 4
    # a group written by an older layout (no layout attribute, or another number) must be redone
    for old in ({"layout": store.LAYOUT - 1}, {}):
        attrs = _attrs(path, "v")
        attrs.pop("layout")
        attrs.update(old)
        meta = json.loads((path / "v" / "zarr.json").read_text())
        meta["attributes"] = attrs
        (path / "v" / "zarr.json").write_text(json.dumps(meta))
        assert not store.is_complete(path, "v")
    assert not store.is_complete(path, "missing")
