"""Small synthetic inputs for tests: videos written with PyAV and Aff-Wild2-style annotation trees."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from afwpipe.labels import AU_NAMES, EXPR_NAMES


def make_video(path: Path, n_frames: int = 10, size: tuple[int, int] = (64, 48), fps: int = 25,
               audio: bool = True, rotate: int | None = None, frames: np.ndarray | None = None,
               faststart: bool = False) -> Path:
    """Write a video of ``n_frames`` (gradient frames, or ``frames`` [T,H,W,3] uint8) and optional 1 kHz audio.

    ``.avi`` uses mpeg4, other suffixes h264 (yuv420p). ``rotate`` sets the stream's rotate tag.
    ``faststart`` (mp4/mov) moves the moov atom (frame table) to the front, so a file with its tail
    cut off still opens and declares all ``n_frames``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    codec = "mpeg4" if path.suffix == ".avi" else "libx264"
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if rotate is not None:
            vs.metadata["rotate"] = str(rotate)
        if audio:
            a = out.add_stream("aac", rate=16000)
            a.layout = "mono"
        for i in range(n_frames):
            img = frames[i] if frames is not None else np.full((h, w, 3), (i * 20) % 256, np.uint8)
            for pkt in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        if audio:
            n = int(16000 * n_frames / fps)
            t = np.arange(n) / 16000
            wave = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[None, :]
            af = av.AudioFrame.from_ndarray(wave, format="flt", layout="mono")
            af.sample_rate = 16000
            af.time_base = Fraction(1, 16000)
            af.pts = 0
            for pkt in a.encode(af):
                out.mux(pkt)
            for pkt in a.encode():
                out.mux(pkt)
    return path


def write_annotation(path: Path, task: str, n: int, header: bool = True, valid: int | None = None) -> Path:
    """Write an annotation file of ``n`` frames for ``task``; the first ``valid`` (default all) are valid."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    valid = n if valid is None else valid
    rng = np.random.default_rng(n)
    lines = []
    if header:
        lines.append({"au": ",".join(AU_NAMES), "expr": ",".join(EXPR_NAMES), "va": "valence,arousal"}[task])
    for i in range(n):
        if task == "au":
            lines.append(",".join(str(int(x)) for x in rng.integers(0, 2, 12)) if i < valid else ",".join(["-1"] * 12))
        elif task == "expr":
            lines.append(str(int(rng.integers(0, 8))) if i < valid else "-1")
        else:
            lines.append(",".join(f"{x:.3f}" for x in rng.uniform(-1, 1, 2)) if i < valid else "-5,-5")
    path.write_text("\n".join(lines) + "\n")
    return path


# (edition folder, {task: challenge folder}, train folder name)
EDITIONS = {
    "abaw3": ("Third ABAW Annotations",
              {"au": "AU_Detection_Challenge", "expr": "EXPR_Classification_Challenge", "va": "VA_Estimation_Challenge"},
              "Train_Set"),
    "abaw5": ("5th ABAW Annotations",
              {"au": "AU_Detection_Challenge", "expr": "EXPR_Classification_Challenge", "va": "VA_Estimation_Challenge"},
              "Training_Set"),
    "abaw6": ("6th_ABAW_Annotations",
              {"au": "AU_Detection_Challenge", "expr": "EXPR_Recognition_Challenge", "va": "VA_Estimation_Challenge"},
              "Train_Set"),
    "abaw8": ("8th ABAW Annotations",
              {"au": "AU_Detection_Challenge", "expr": "EXPR_Recognition_Challenge", "va": "VA_Estimation_Challenge"},
              "Train_Set"),
}

TEST_LIST_FOLDER = "names_of_videos_in_each_test_set"
# track -> test-list file of the organisers (ABAW3 says Expression_Classification)
TEST_LIST_FILES = {"au": "Action_Unit_Detection_Challenge_test_set_release.txt",
                   "expr": "Expression_Recognition_Challenge_test_set_release.txt",
                   "va": "Valence_Arousal_Estimation_Challenge_test_set_release.txt"}
# track -> names in its test list (see make_affwild2_tree)
TEST_NAMES = {"au": ["166", "30-64x48_left", "30-64x48_right", "lost_test"],
              "expr": ["166", "20-24-64x48", "30-64x48_left", "30-64x48_right"],
              "va": ["166", "30-64x48_left", "30-64x48_right"]}
EXAMPLE_FOLDER = "example_submissions"
EXAMPLE_FILES = {"au": "AU_Detection_Challenge_example.txt", "expr": "EXPR_Recognition_Challenge_example.txt",
                 "va": "VA_Estimation_Challenge_example.txt"}
EXAMPLE_HEADERS = {"au": "image_location," + ",".join(AU_NAMES), "expr": "image_location," + ",".join(EXPR_NAMES),
                   "va": "image_location,valence,arousal"}


def make_affwild2_tree(root: Path, edition: str = "abaw6", n_frames: int = 12, test_lists: bool = False,
                       examples: bool = False, videos: bool = True) -> Path:
    """A tiny Aff-Wild2 copy: videos in batch1/ (.mp4), batch2/ (.avi), new_vids/ (two-person .mp4),
    annotations in the edition's folder names (``EDITIONS``). Returns ``root``.

    Every video has ``n_frames`` frames. Always (every track annotates the same names, ``valid`` =
    ``n_frames - 2`` labelled frames each):

    - ``1-30-64x48`` (batch1/.mp4): train in AU, EXPR, VA.
    - ``5-60-64x48-1`` (batch2/.avi, no audio): val in AU, EXPR, VA.
    - ``10-60-64x48`` (new_vids/.mp4): two people, ``10-60-64x48_left`` and ``10-60-64x48_right`` both
      train in AU, EXPR, VA.
    - ``166`` (batch1/.mp4): no annotation.
    - annotation ``ghost`` (train in every track) has no video.

    With ``test_lists=True`` the organisers' per-track test lists are written to
    ``annotations/<edition>/names_of_videos_in_each_test_set/`` (file names ``TEST_LIST_FILES``, names
    ``TEST_NAMES``), with three more videos:

    - ``20-24-64x48`` (batch1/.mp4): VA train only (annotated in VA_*/<train folder>, no AU/EXPR file)
      and in the EXPR test list: one record with splits ``{au: None, expr: test, va: train}``.
    - ``30-64x48`` (new_vids/.mp4): two people, no annotation; ``30-64x48_left`` and ``30-64x48_right``
      are in all three test lists (splits all ``test``).
    - ``300`` (batch1/.mp4): no annotation and in no test list (splits all None).
    - ``166`` is in all three test lists; ``lost_test`` is in the AU test list but has no video.

    With ``examples=True`` (needs ``test_lists``) organisers'-style example submission files are written
    to ``<root>/example_submissions/`` (``EXAMPLE_FILES``): header ``EXAMPLE_HEADERS[track]``, then one
    row ``<name>/<00001>.jpg,`` per frame (``n_frames`` rows, 1-based) of each test name of the track
    that has a video (``lost_test`` is left out), values empty.

    ``videos=False`` writes annotations only (to add a second edition beside a first one).
    """
    ed, dirs, train = EDITIONS[edition]
    if videos:
        make_video(root / "batch1" / "1-30-64x48.mp4", n_frames)
        make_video(root / "batch2" / "5-60-64x48-1.avi", n_frames, audio=False)
        make_video(root / "new_vids" / "10-60-64x48.mp4", n_frames)
        make_video(root / "batch1" / "166.mp4", n_frames)
        if test_lists:
            make_video(root / "batch1" / "20-24-64x48.mp4", n_frames)
            make_video(root / "new_vids" / "30-64x48.mp4", n_frames)
            make_video(root / "batch1" / "300.mp4", n_frames)
    ann = root / "annotations" / ed
    names = {"1-30-64x48": train, "5-60-64x48-1": "Validation_Set", "10-60-64x48_left": train,
             "10-60-64x48_right": train, "ghost": train}
    for task, cdir in dirs.items():
        for name, split in names.items():
            write_annotation(ann / cdir / split / f"{name}.txt", task, n_frames, valid=n_frames - 2)
    if test_lists:
        write_annotation(ann / dirs["va"] / train / "20-24-64x48.txt", "va", n_frames, valid=n_frames - 2)
        (ann / TEST_LIST_FOLDER).mkdir(parents=True, exist_ok=True)
        for track, fname in TEST_LIST_FILES.items():
            if edition == "abaw3" and track == "expr":
                fname = fname.replace("Recognition", "Classification")
            (ann / TEST_LIST_FOLDER / fname).write_text("\n".join(TEST_NAMES[track]) + "\n")
    if examples:
        (root / EXAMPLE_FOLDER).mkdir(parents=True, exist_ok=True)
        for track, fname in EXAMPLE_FILES.items():
            rows = [EXAMPLE_HEADERS[track]] + [f"{name}/{i:05d}.jpg," for name in TEST_NAMES[track]
                                               if name != "lost_test" for i in range(1, n_frames + 1)]
            (root / EXAMPLE_FOLDER / fname).write_text("\n".join(rows) + "\n")
    return root


#: what a hand-written index record of a test leaves out: a probed 64x48 25 fps video without audio
_PROBED = {"side": None, "fps": 25.0, "width": 64, "height": 48, "rotation": 0, "vfr": False, "has_audio": False,
           "audio_rate": 0, "audio_channels": 0}


def complete_index(index: dict) -> dict:
    """A hand-written ``index.json`` dict of a test with what the test does not care about filled in, so it parses
    as :class:`afwpipe.records.IndexFile`: ``dataset`` (``synthetic``), and per record ``video`` (its name),
    ``path`` (``<name>.mp4``), ``n_frames`` (0), ``duration`` (``n_frames / 25``) and :data:`_PROBED`."""
    out = {"dataset": "synthetic", **index}
    recs = []
    for r in index.get("videos", []):
        n = r.get("n_frames", 0)
        recs.append({"video": r["name"], "path": f"{r['name']}.mp4", "n_frames": n, "duration": n / 25.0,
                     **_PROBED, **r})
    out["videos"] = recs
    return out


def as_index(index: dict):
    """:func:`complete_index` parsed: the :class:`afwpipe.records.IndexFile` a step reads."""
    from afwpipe.records import IndexFile

    return IndexFile.from_json(complete_index(index), "test index")
