"""The detect step: stream each video once, detect faces in batches, align crops, keep the audio.

Per video (``detect_video``), three things overlap: a decoding thread fills a bounded queue with
batches of frames (PyAV, never the whole video in memory), the calling thread runs the detector and
alignment, and a writer thread appends the results to ``faces.zarr/<name>/`` shard by shard. Frames
without the target face keep ``present=False``; their crop is filled from the nearest frame with a face
(ties to the earlier frame), as the ABAW seeds do, on the stream before the writer (``afwpipe.fill``), so
no written shard is rewritten. The audio track is resampled to 16 kHz
mono into ``audio.zarr/<name>/wave`` on the frames' clock: sample 0 is at the first decoded frame's container
time (``video.read_audio_track``; attributes ``offset`` s and ``lead`` samples of silence added). ``complete`` is written last in both groups, so a killed run is
redone from scratch for that video and skipped for the finished ones.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
from tqdm import tqdm

from . import layout, store
from .crop_codec import DEFAULT as DEFAULT_CROP_CODEC, parse_crop_codec
from .config import FromParams
from .device import resolve_device
from .errors import VideoError
from .labels import AUDIO_SAMPLE_RATE
from .faces import align_faces, create_detector
from .faces.select import FaceSelector
from .fill import NearestFill
from .frames import check_decoder, frame_batches
from .prefetch import prefetch
from .results import RunSummary, VideoResult
from .records import IndexRecord
from .runner import run_videos, scheduler_address
from .video import decoded_seconds, probe_video, read_audio_track, truncation_warning

log = logging.getLogger(__name__)


@dataclass
class DetectConfig(FromParams):
    """Options of the face step (``params.yaml`` section ``detect``; every default here equals params.yaml).

    Attributes:
        detector: registry name (``mtcnn``, ``retinaface``).
        size: side S of the aligned crops, pixels.
        batch_size: frames per detector call.
        device: ``auto`` (CUDA when torch sees a GPU), ``cpu``, ``cuda``, ``cuda:N``.
        weights: detector weights file (None: the detector's default / cache).
        use_cropped: read ``cropped_aligned/<name>/<00001>.jpg`` instead of detecting.
        queue_batches: decoded batches held ahead of the detector (bounds memory).
        crop_codec: how ``faces.zarr/<name>/crops`` is stored (:mod:`afwpipe.crop_codec`): ``jpeg<Q>`` (one
            JPEG file of quality Q per frame; default ``jpeg90``), ``zstd`` or ``lz4`` (lossless uint8).
        decoder: ``pyav`` (PyAV) or ``torchcodec`` (torchcodec on ``device``: NVDEC on CUDA); see
            ``afwpipe.frames``.

    Raises:
        ConfigError: ``decoder`` or ``crop_codec`` is unknown, or torchcodec cannot be loaded (names FFmpeg's
            libraries).
    """

    params_section: ClassVar[str] = "detect"

    detector: str = "mtcnn"
    size: int = 224
    batch_size: int = 16
    device: str = "auto"
    weights: str | None = None
    use_cropped: bool = False
    queue_batches: int = 4
    decoder: str = "pyav"
    crop_codec: str = DEFAULT_CROP_CODEC

    def __post_init__(self):
        self.size, self.batch_size, self.queue_batches = int(self.size), int(self.batch_size), int(self.queue_batches)
        check_decoder(self.decoder)
        self.crop_codec = parse_crop_codec(self.crop_codec).name  # ConfigError naming a bad value

    def identity(self, detector_cfg: dict | None) -> dict:
        """What makes two runs' outputs comparable; stored on every video group."""
        return {"detector": "cropped_aligned" if self.use_cropped else self.detector, "size": self.size,
                "detector_config": detector_cfg or {}, "crop_codec": self.crop_codec}


def _center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    h, w = frames.shape[1:3]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return np.stack([cv2.resize(f[y0:y0 + s, x0:x0 + s], (size, size), interpolation=cv2.INTER_AREA) for f in frames])


def _cropped_batches(folder: Path, n_frames: int, batch_size: int, size: int):
    """Yield ``(present [B] bool, crops [B,S,S,3])`` read from Aff-Wild2 ``cropped_aligned`` JPEGs."""
    for start in range(0, n_frames, batch_size):
        idx = range(start, min(start + batch_size, n_frames))
        crops = np.zeros((len(idx), size, size, 3), np.uint8)
        present = np.zeros(len(idx), bool)
        for j, i in enumerate(idx):
            img = cv2.imread(str(folder / f"{i + 1:05d}.jpg"), cv2.IMREAD_COLOR)
            if img is not None:
                img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
                crops[j] = img if img.shape[:2] == (size, size) else cv2.resize(img, (size, size))
                present[j] = True
        yield present, crops


def fill_runs(present: np.ndarray) -> list[tuple[int, int, int]]:
    """Plan the nearest-frame fill: ``(start, stop, source)`` per run of frames without a face.

    Each frame in ``[start, stop)`` takes the crop of the nearest frame with a face; ties go to the
    earlier frame. A run that has faces on both sides is split at its midpoint. Empty when no frame
    (or every frame) has a face.
    """
    present = np.asarray(present, bool)
    idx = np.flatnonzero(present)
    if len(idx) == 0 or len(idx) == len(present):
        return []
    runs = []
    absent = np.flatnonzero(~present)
    starts = absent[np.r_[True, np.diff(absent) > 1]]
    stops = absent[np.r_[np.diff(absent) > 1, True]] + 1
    for a, b in zip(starts, stops):
        left = a - 1 if a > 0 else None
        right = b if b < len(present) else None
        if left is None:
            runs.append((int(a), int(b), int(right)))
        elif right is None:
            runs.append((int(a), int(b), int(left)))
        else:
            mid = a + (b - a + 1) // 2  # frames < mid are at least as close to the left face
            runs.append((int(a), int(mid), int(left)))
            if mid < b:
                runs.append((int(mid), int(b), int(right)))
    return runs


#: the detect identity's ``detector`` of an aligned image dataset (the image is the crop, no detector ran)
ALIGNED = "aligned_image"


class FaceWorker:
    """The per-video worker of the face step: detects, aligns and writes one video at a time; one detector
    instance is reused across videos.

    ``aligned`` (the index's ``aligned``: an ``image_csv`` dataset of aligned face images, docs/datasets.md): every
    decoded frame is already the face; its centre square resized to the crop size is the crop (present, score 1,
    box the square, no landmarks) and no detector is built.
    """

    def __init__(self, ws: store.Workspace, cfg: DetectConfig, progress: bool = True,
                 cropped_root: Path | None = None, aligned: bool = False):
        self.ws, self.progress, self.cropped_root, self.aligned = ws, progress, cropped_root, aligned
        self.cfg = replace(cfg, device=resolve_device(cfg.device))
        self._detector = None

    @property
    def detector(self):
        if self._detector is None:
            self._detector = create_detector(self.cfg.detector, weights=self.cfg.weights, device=self.cfg.device)
        return self._detector

    def identity(self) -> dict:
        if self.aligned:
            return {**self.cfg.identity(None), "detector": ALIGNED}
        return self.cfg.identity(None if self.cfg.use_cropped else self.detector.cfg.as_dict())

    def is_done(self, name: str, side: str | None = None) -> bool:
        """Both groups complete and written with the same detector identity and, when faces are detected, for
        the same ``side`` (the index record's; ``None`` = ``largest``) (else the video is redone: a
        re-index that gives a bare name the other person's side must not keep the old face track)."""
        if not (store.is_complete(self.ws.faces, name) and store.is_complete(self.ws.audio, name)):
            return False
        attrs = store.open_store(self.ws.faces, "r")[name].attrs.asdict()
        same_side = self.cfg.use_cropped or self.aligned or (attrs.get("side") or "largest") == (side or "largest")
        return attrs.get("identity") == self.identity() and same_side

    def run_video(self, rec: IndexRecord) -> VideoResult:
        """Process one index record (its ``name``, ``path``, ``side``, ``n_frames``, ``width``).

        ``side``: ``left`` / ``right`` (that person of a two-person video), ``largest`` or None (the largest
        face, then tracked); ``afwpipe.faces.select``.

        Logs a warning naming the file when it decodes fewer frames than indexed or clearly fewer than
        the container declares (``video.truncation_warning`` with the index's ``declared_frames`` /
        ``declared_duration``).

        Raises:
            VideoError: the video cannot be decoded, or decodes to fewer frames than indexed.
            WeightsError: the detector's weights are missing.
        """
        name, path, n = rec.name, Path(rec.path), rec.n_frames
        res = VideoResult(name)
        if self.is_done(name, rec.side):
            res.skipped = True
            return res
        t0 = time.perf_counter()
        ident = self.identity()
        g = store.begin_video(self.ws.faces, name, {"video": str(path), "side": rec.side, "identity": ident})
        S = self.cfg.size
        codec = parse_crop_codec(self.cfg.crop_codec)
        arrays = {
            "boxes": store.create_time_array(g, "boxes", (n, 4), np.float32, fill_value=np.nan),
            "landmarks": store.create_time_array(g, "landmarks", (n, 5, 2), np.float32, fill_value=np.nan),
            "score": store.create_time_array(g, "score", (n,), np.float32),
            "present": store.create_time_array(g, "present", (n,), bool, fill_value=False),
            "crops": codec.create(g, n, S),
            "times": store.create_time_array(g, "times", (n,), np.float64),
        }
        writers = {k: store.TimeWriter(a) for k, a in arrays.items()}
        fill = NearestFill(lambda crops: writers["crops"].append(codec.encode(crops)), hold=writers["crops"].shard)
        present_all = np.zeros(n, bool)
        times_all = np.zeros(n, np.float64)
        bar = tqdm(total=n, desc=name[:30], unit="frame", disable=not self.progress, leave=False)
        pos = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="afwpipe-write") as pool:
            pending: Future | None = None

            def write(block: dict):  # the crops are filled (nearest face) and encoded in the writer thread
                fill.push(block.pop("crops"), block["present"])
                for k, v in block.items():
                    writers[k].append(v)

            for block in self._blocks(rec, path, n):
                k = min(len(block["present"]), n - pos)
                if k <= 0:
                    log.warning("%s: decodes to more frames than the index's %d; extra frames ignored", path, n)
                    break
                block = {key: v[:k] for key, v in block.items()}
                present_all[pos:pos + k] = block["present"]
                times_all[pos:pos + k] = block["times"]
                if pending is not None:
                    pending.result()
                pending = pool.submit(write, block)
                pos += k
                bar.update(k)
            if pending is not None:
                pending.result()
        bar.close()
        short = truncation_warning(pos, rec.declared_frames, decoded_seconds(times_all[:pos]),
                                   float(rec.declared_duration))
        if pos < n or short:
            log.warning("%s: %s", path, f"decoded {pos} frames but the index recorded {n}" if pos < n else short)
        if pos < n:
            raise VideoError(f"{path}: decoded {pos} frames but the index says {n}; re-run `afwpipe index`")
        if not fill.finish():  # no face anywhere, more placeholders than held: make them again
            for crops in self._placeholders(rec, path, n):
                writers["crops"].append(codec.encode(crops))
        for w in writers.values():
            w.close()
        res.frames, res.present = n, int(present_all.sum())
        res.audio = self._write_audio(name, path, rec)
        store.mark_complete(g, n_frames=n, present_frames=res.present)
        res.seconds = time.perf_counter() - t0
        return res

    def _blocks(self, rec: IndexRecord, path: Path, n: int):
        """Yield per-batch dicts of arrays (boxes, landmarks, score, present, crops, times)."""
        S, B = self.cfg.size, self.cfg.batch_size
        cropped_root = self.cropped_root
        if self.aligned:
            yield from self._aligned_blocks(path)
            return
        if self.cfg.use_cropped:
            if cropped_root is None or not (cropped_root / rec.name).is_dir():
                raise VideoError(f"{cropped_root}/{rec.name}: no cropped_aligned folder for this video")
            times = probe_video(path).times
            i = 0
            for present, crops in prefetch(_cropped_batches(cropped_root / rec.name, n, B, S),
                                            self.cfg.queue_batches):
                m = len(present)
                yield {"boxes": np.full((m, 4), np.nan, np.float32),
                       "landmarks": np.full((m, 5, 2), np.nan, np.float32),
                       "score": present.astype(np.float32), "present": present, "crops": crops,
                       "times": times[i:i + m]}
                i += m
            return
        side = rec.side
        selector = FaceSelector(side=None if side == "largest" else side, frame_width=rec.width)
        t_first = None
        source = frame_batches(path, B, self.cfg.decoder, self.cfg.device)
        for batch in prefetch(source, self.cfg.queue_batches):
            frames, times = batch.frames, batch.times
            dets = self.detector.detect(frames)
            chosen = selector.update(dets)
            m = len(frames)
            boxes = np.full((m, 4), np.nan, np.float32)
            lms = np.full((m, 5, 2), np.nan, np.float32)
            score = np.zeros(m, np.float32)
            for j, (d, c) in enumerate(zip(dets, chosen)):
                if c >= 0:
                    boxes[j], lms[j], score[j] = d.boxes[c], d.landmarks[c], d.scores[c]
            present = chosen >= 0
            crops = align_faces(frames, lms, S)
            if not present.all():  # placeholder until filled from the nearest face (kept if none)
                crops[~present] = _center_crop(frames[~present], S)
            t = np.array([np.nan if x is None else x for x in times], np.float64)
            t_first = t[0] if t_first is None else t_first
            yield {"boxes": boxes, "landmarks": lms, "score": score, "present": present, "crops": crops,
                   "times": t - t_first}

    def _aligned_blocks(self, path: Path):
        """The blocks of an aligned face image (class docstring): each decoded frame's centre square resized to
        ``size`` (:func:`_center_crop`), present with score 1 and box ``[x0, y0, x0 + s, y0 + s]`` (pixels)."""
        t_first = None
        for batch in prefetch(frame_batches(path, self.cfg.batch_size, self.cfg.decoder, self.cfg.device),
                              self.cfg.queue_batches):
            frames, m = batch.frames, len(batch.frames)
            h, w = frames.shape[1:3]
            s = min(h, w)
            x0, y0 = (w - s) // 2, (h - s) // 2
            t = np.array([np.nan if x is None else x for x in batch.times], np.float64)
            t_first = t[0] if t_first is None else t_first
            yield {"boxes": np.tile(np.array([x0, y0, x0 + s, y0 + s], np.float32), (m, 1)),
                   "landmarks": np.full((m, 5, 2), np.nan, np.float32), "score": np.ones(m, np.float32),
                   "present": np.ones(m, bool), "crops": _center_crop(frames, self.cfg.size), "times": t - t_first}

    def _placeholders(self, rec: IndexRecord, path: Path, n: int):
        """The crops of a video without any face, again: centre crops of the frames (black crops with
        ``use_cropped``), in blocks; a second decode, only for faceless videos longer than the fill's hold."""
        log.info("%s: no face in any frame; decoding again for the placeholder crops", path)
        S, pos = self.cfg.size, 0
        if self.cfg.use_cropped:
            for a in range(0, n, self.cfg.batch_size):
                yield np.zeros((min(self.cfg.batch_size, n - a), S, S, 3), np.uint8)
            return
        for batch in frame_batches(path, self.cfg.batch_size, self.cfg.decoder, self.cfg.device):
            k = min(len(batch.frames), n - pos)
            if k > 0:
                yield _center_crop(batch.frames[:k], S)
            pos += k

    def _write_audio(self, name: str, path: Path, rec: IndexRecord) -> bool:
        """``audio.zarr/<name>/wave``: 16 kHz mono float32 whose sample 0 is at the first decoded frame's
        container time (silence without an audio stream); attributes ``present``, ``seconds``, ``offset``
        (audio start - first frame, s) and ``lead`` (leading samples of silence added)."""
        track = read_audio_track(path, AUDIO_SAMPLE_RATE)
        present = track is not None
        if track is None:
            wave, offset, lead = np.zeros(int(round(rec.duration * AUDIO_SAMPLE_RATE)), np.float32), None, 0
        else:
            wave, offset, lead = track.wave, track.offset, track.lead
        g = store.begin_video(self.ws.audio, name, {"video": str(path), "sample_rate": AUDIO_SAMPLE_RATE})
        store.write_time_array(g, "wave", wave, dims=("sample",))
        store.mark_complete(g, present=present, seconds=len(wave) / AUDIO_SAMPLE_RATE, offset=offset, lead=lead)
        return present


def run_detect(ws: store.Workspace, cfg: DetectConfig, names: list[str] | None = None,
               progress: bool = True, scheduler: str | None = None) -> RunSummary:
    """Run the detect step on every indexed video (or ``names``) of ``ws``; one failure never stops the others.

    An index with ``aligned: true`` (an ``image_csv`` dataset of aligned faces) takes each image as its crop
    (:class:`FaceWorker`). With ``scheduler`` (a Dask scheduler address) each video is one task on the cluster
    (``afwpipe.runner``); ``ws`` must then be on storage every worker sees.
    Writes ``faces.zarr``, ``audio.zarr`` and ``detect_failures.json`` (the failed videos and why).

    Raises:
        WeightsError: the detector's weights are missing (nothing is written).
    """
    index = ws.read_index()
    recs = [r for r in index.records if names is None or r.name in names]
    cropped_aligned = index.reader_fields.get("cropped_aligned")  # the affwild2 reader's field
    cropped = Path(cropped_aligned) if cropped_aligned else None
    if scheduler_address(scheduler):
        for path in (ws.faces, ws.audio):
            store.open_store(path, "a")  # create the roots once, before concurrent writers
    factory = partial(FaceWorker, ws, cfg, progress and scheduler is None, cropped, bool(index.reader_fields.get("aligned")))
    summary = RunSummary()
    summary.results = run_videos(factory, recs, "detect", progress, scheduler,
                                 gpu=resolve_device(cfg.device).startswith("cuda"))
    summary.write_failures(layout.failures_file(ws, "detect"))
    return summary


def main(ws: store.Workspace, cfg: DetectConfig, *, names: list[str] | None = None, accept_failures: bool = False,
         scheduler: str | None = None, progress: bool = True) -> int:
    """The detect step as ``afwpipe detect`` and ``python -m stages.detect`` run it: :func:`run_detect`, then
    the summary line and the failures printed. Returns the exit code (1 when a video failed, unless
    ``accept_failures``)."""
    summary = run_detect(ws, cfg, names=names, progress=progress, scheduler=scheduler)
    return summary.report(accept_failures)
