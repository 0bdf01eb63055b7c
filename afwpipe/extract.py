"""The extract step: read crops / audio from the detect step's stores, write per-frame embeddings.

For each video: ``features/<encoder>.zarr/<name>/emb [T, D] float16`` aligned to the video's decoded
frames, ``present [T] bool`` (visual: a face was found in that frame, the crop is otherwise the
nearest face's; audio: the frame lies inside the audio track), and the encoder's config as attributes
(weights identity, dim, input size or sample rate, normalisation, afwpipe version). With ``views``
(:mod:`afwpipe.views`) a visual encoder also writes ``emb_<view> [T, D] float16`` per extra view (e.g.
``emb_flip``), the view list in the group's ``views`` attribute and in its identity; so does an audio encoder
that reads a log-Mel spectrogram, for the audio views of :mod:`afwpipe.audio_views` (e.g. ``emb_tfcrop0.8``).

Visual encoders read crops one shard-aligned block at a time in a prefetch thread, decoding them there
(JPEG crops of ``detect.crop_codec``: libjpeg-turbo on a CPU, nvJPEG on a CUDA device), and write in a
writer thread, so the encoder forward is the only thing the main thread does. Audio encoders read
the whole 16 kHz wave (small) and align their states to the frame times of ``faces.zarr``.
Completeness and restart follow ``afwpipe.store``: ``complete`` last, complete videos with the same
encoder identity skipped, anything else redone.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import ClassVar

import numpy as np
import torch
from tqdm import tqdm

from . import layout, store
from .encoders import ENCODERS, AudioEncoder, create_encoder, is_encoder
from .encoders.audio_options import split_options
from .encoders.finetuned import FT_PREFIX
from .config import FromParams
from .crop_codec import block_rows, is_jpeg_array, read_crops
from .device import resolve_device
from .errors import AfwpipeError, EncoderError, VideoError
from .labels import AUDIO_SAMPLE_RATE
from .prefetch import prefetch
from .results import RunSummary, VideoResult
from .runner import run_videos, scheduler_address
from .audio_views import apply_mel_view, view_rng
from .views import FULL, apply_view, array_name, parse_views, view_modality
from .records import IndexRecord

log = logging.getLogger(__name__)

AUTO = "auto"
#: crops per forward on a CPU (``batch_size: auto``): the default before ``auto``, features unchanged
CPU_BATCH = 32
#: ``batch_size: auto`` on a CUDA device: (GiB of device memory at least, crops per forward), first match.
#: 256 from 40 GiB (A100-40G and up, H100, H200): timm's published inference benchmarks run ViT-B/16 at
#: batch 256 in bf16, ~3,000-5,000 images/s on an H100/H200; a ViT-B/16 forward at batch 256 in bf16 holds
#: well under 4 GiB of activations, so ViT-L/H fit as well. Smaller GPUs halve it.
GPU_BATCHES = ((40, 256), (16, 128), (0, 64))


def auto_batch_size(device: str) -> int:
    """Crops per forward for ``batch_size: auto`` on ``device`` (a resolved device: ``cpu``, ``cuda[:N]``):
    :data:`CPU_BATCH` on a CPU, else by the device's total memory (:data:`GPU_BATCHES`)."""
    if not str(device).startswith("cuda"):
        return CPU_BATCH
    gib = torch.cuda.get_device_properties(torch.device(device)).total_memory / 2 ** 30
    return next(b for mem, b in GPU_BATCHES if gib >= mem)


@dataclass
class ExtractConfig(FromParams):
    """Options of one encoder's extract step (``params.yaml`` section ``extract``; every default here equals
    params.yaml).

    Attributes:
        encoder: registry name (``mae``, ``whisper``, ``timm:<id>`` ..., ``ft_<run>``: a fine-tuned run of the
            workspace, ``finetune/<run>/``, cached in its own store ``features/ft_<run>.zarr``).
        weights: None (default weights: caches, then download), a file, or ``"random"``. In params.yaml,
            ``extract.weights`` maps encoder names to these values.
        device: ``auto`` (CUDA when torch sees a GPU), ``cpu``, ``cuda``, ``cuda:N``.
        batch_size: crops per forward pass (visual encoders): a number, or ``auto`` (:func:`auto_batch_size`:
            32 on a CPU; on a CUDA device by its memory, 256 from 40 GiB up).
        options: how to build this feature store's encoder. In params.yaml, ``extract.options`` maps a name of
            ``extract.encoders`` (the store ``features/<name>.zarr`` and the stage ``extract@<name>``) to
            ``{encoder: <registry name>, <option>: <value>, ...}``: ``encoder`` (default: the name itself) is
            built with the other keys as keyword options, e.g. ``{wavlm_l12: {encoder: "hf:microsoft/wavlm-large",
            layer: 12}}`` or ``{hubert: {layer: 9}}``. The options are recorded in the store's encoder config.
            Every audio encoder also takes ``peak_normalize: true`` (the wave divided by its peak, read so here:
            ``audio.zarr`` stays raw) and ``pool: stats`` (per frame ``[mean, std]`` of the states, dim doubled);
            see :mod:`afwpipe.encoders.audio_options`.
        views: views of each crop to encode (:mod:`afwpipe.views`: ``full``, ``flip``, ``crop<X>``), a list or
            a comma-separated string; ``full`` is always stored (as ``emb``), each other view as
            ``emb_<view> [T, D] float16`` in the same video group. params ``extract.views`` are the visual
            encoders'; an audio store that reads a log-Mel spectrogram takes the audio views of
            :mod:`afwpipe.audio_views` (``fcrop<X>``, ``tcrop<X>``, ``tfcrop<X>``, ``fmask<W>``) from
            ``extract.options.<name>.views`` (or ``afwpipe extract --views``).
    """

    params_section: ClassVar[str] = "extract"
    params_ignored: ClassVar[tuple[str, ...]] = ("encoders",)  # the DVC foreach list
    params_error: ClassVar[type[AfwpipeError]] = EncoderError

    encoder: str
    weights: str | None = None
    device: str = "auto"
    batch_size: int | str = "auto"
    options: dict = field(default_factory=dict)
    views: list[str] = field(default_factory=lambda: [FULL])

    def __post_init__(self):
        if str(self.batch_size).strip().lower() == AUTO:
            self.batch_size = AUTO
        else:
            try:
                self.batch_size = int(self.batch_size)
            except ValueError:
                raise EncoderError(f"params extract.batch_size: {self.batch_size!r} is neither a positive number "
                                   f"nor {AUTO!r}") from None
            if self.batch_size < 1:
                raise EncoderError(f"params extract.batch_size: {self.batch_size} must be >= 1 (or {AUTO!r})")
        self.views = parse_views(self.views, EncoderError)
        if not isinstance(self.options, dict):
            raise EncoderError(f"params extract.options.{self.encoder}: expected a mapping of options "
                               f"(e.g. {{encoder: 'hf:microsoft/wavlm-large', layer: 12}}), got {self.options!r}")

    def build_args(self) -> tuple[str, dict]:
        """(registry name, keyword options) of this store's encoder, from ``options``."""
        opts = dict(self.options)
        return str(opts.pop("encoder", self.encoder)), opts

    @classmethod
    def from_params(cls, section, **overrides) -> "ExtractConfig":
        """The config of encoder ``overrides["encoder"]`` from params ``extract``: its weights from the
        ``weights`` mapping unless ``overrides`` give them; the section's ``views`` only for a visual encoder
        (params ``extract.views`` are the views of the visual encoders of ``extract.encoders``; an audio encoder
        given views by ``overrides`` is an error when the worker starts)."""
        section = dict(section or {})
        per_encoder = section.pop("weights", None) or {}
        if overrides.get("weights") is None:
            overrides["weights"] = per_encoder.get(overrides.get("encoder"))
        if overrides.get("options") is None:
            overrides["options"] = (section.pop("options", None) or {}).get(overrides.get("encoder"))
        section.pop("options", None)
        views = section.pop("views", None)
        opts = overrides.get("options")
        registry_name = str((opts if isinstance(opts, dict) else {}).get("encoder", overrides.get("encoder", "")))
        if overrides.get("views") is None and is_encoder(registry_name) and \
                ENCODERS.default_cfg(registry_name).modality == "visual":
            overrides["views"] = views
        return cls(**cls.params_kwargs(section, overrides))


def _check_finite(emb: np.ndarray, encoder: str, name: str, offset: int = 0) -> None:
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        raise AfwpipeError(f"{encoder} on {name}: NaN/Inf features at frame {offset + int(np.argmax(bad))}")


class EncoderWorker:
    """Runs one encoder over the videos of a workspace (the model is built once)."""

    def __init__(self, ws: store.Workspace, cfg: ExtractConfig, progress: bool = True):
        device = resolve_device(cfg.device)
        cfg = replace(cfg, device=device,
                      batch_size=auto_batch_size(device) if cfg.batch_size == AUTO else cfg.batch_size)
        self.ws, self.cfg, self.progress = ws, cfg, progress
        name, options = cfg.build_args()
        options, audio_options = split_options(cfg.encoder, options)
        weights = cfg.weights
        if weights is None and name.startswith(FT_PREFIX):  # a fine-tuned run of this workspace
            weights = ws.finetune(name[len(FT_PREFIX):])
        try:
            self.encoder = create_encoder(name, weights=weights, device=cfg.device, **options)
        except TypeError as e:  # an option the encoder does not take
            if "unexpected keyword" not in str(e):
                raise
            raise EncoderError(f"params extract.options.{cfg.encoder}: {name} does not take option(s) "
                               f"{sorted(options)}: {e}") from e
        if audio_options:
            if not isinstance(self.encoder, AudioEncoder):
                raise EncoderError(f"params extract.options.{cfg.encoder}: {', '.join(sorted(audio_options))} "
                                   f"apply to audio encoders; {name} is {self.encoder.cfg.modality}")
            if "views" in audio_options:  # an audio store's views: extract.options.<name>.views
                self.cfg = cfg = replace(cfg, views=parse_views(audio_options.pop("views"), EncoderError))
            self.encoder.set_audio_options(**audio_options)
        if hasattr(self.encoder, "batch_size") and self.encoder.cfg.modality == "visual":
            self.encoder.batch_size = cfg.batch_size
        self._check_views(cfg.encoder)
        self.out = ws.features(cfg.encoder)

    def _check_views(self, store_name: str) -> None:
        """Views of face crops need a visual encoder; audio views (:mod:`afwpipe.audio_views`) an audio encoder
        that reads a log-Mel spectrogram.

        Raises:
            EncoderError: a view this encoder cannot take (names the store, the view and what takes it).
        """
        modality = self.encoder.cfg.modality
        for v in self.cfg.views:
            kind = view_modality(v)
            if kind is None or (kind == modality and (kind == "visual" or self.encoder.mel_input)):
                continue
            if kind == "visual":
                raise EncoderError(f"{store_name}: view {v} is a view of face crops and needs a visual encoder; "
                                   f"{store_name} is {modality}")
            raise EncoderError(f"{store_name}: view {v} is an audio view of the log-Mel input and needs an audio "
                               f"encoder that reads one (logmel, whisper*, vggish, AST); {store_name} is "
                               f"{self.encoder.name} ({modality})")

    def identity(self) -> dict:
        """The encoder config, plus ``views`` when more than ``full`` is stored (a rerun with another view
        list redoes the video)."""
        return self.encoder.config if self.cfg.views == [FULL] else {**self.encoder.config, "views": self.cfg.views}

    def is_done(self, name: str) -> bool:
        """Complete with this encoder identity and, for a visual encoder, from the faces group as it is now (its
        detect ``identity``, which names the detector and the crop codec: a detect rerun that rewrote the crops
        redoes the video; audio features do not depend on the crops)."""
        if not store.is_complete(self.out, name):
            return False
        attrs = store.open_store(self.out, "r")[name].attrs
        return attrs.get("encoder_config") == self.identity() and attrs.get("faces") == self._faces_identity(name)

    def _faces_identity(self, name: str):
        """The detect identity of the crops a visual encoder reads (None for audio encoders)."""
        if self.encoder.cfg.modality != "visual" or not store.is_complete(self.ws.faces, name):
            return None
        return store.open_store(self.ws.faces, "r")[name].attrs.get("identity")

    def run_video(self, rec: IndexRecord) -> VideoResult:
        name = rec.name
        res = VideoResult(name)
        if self.is_done(name):
            res.skipped = True
            return res
        if not store.is_complete(self.ws.faces, name):
            raise VideoError(f"{self.ws.faces}/{name}: no complete detect output; run `afwpipe detect` first")
        t0 = time.perf_counter()
        faces = store.open_store(self.ws.faces, "r")[name]
        n = faces["present"].shape[0]
        cfg = self.encoder.config
        g = store.begin_video(self.out, name, {"encoder": self.cfg.encoder, "encoder_config": self.identity(),
                                                "modality": cfg["modality"], "dim": cfg["dim"],
                                                "weights": cfg["weights"], "views": self.cfg.views,
                                                "video": rec.path, "faces": self._faces_identity(name)})
        embs = {v: store.create_time_array(g, array_name(v), (n, cfg["dim"]), np.float16, dims=("frame", "feature"))
                for v in self.cfg.views}
        if cfg["modality"] == "visual":
            present = faces["present"][...]
            self._visual(faces["crops"], embs, name)
            extra = {}
        else:
            present, extra = self._audio(faces["times"][...], embs, name)
        store.write_time_array(g, "present", present, dims=("frame",))
        for key, arr in extra.items():  # encoder-specific per-frame arrays (vad: speech)
            store.write_time_array(g, key, arr, dims=("frame",))
        res.frames, res.present = n, int(present.sum())
        store.mark_complete(g, n_frames=n)
        res.seconds = time.perf_counter() - t0
        return res

    def _visual(self, crops, embs: dict, name: str) -> None:
        """Encode ``crops [T, S, S, 3] uint8`` into ``embs`` (view -> ``[T, D] float16`` array): each
        shard-aligned block is read once and encoded once per view."""
        n = crops.shape[0]
        block = block_rows(crops, self.cfg.batch_size)
        writers = {v: store.TimeWriter(emb) for v, emb in embs.items()}

        def write(feats: dict) -> None:
            for v, f in feats.items():
                writers[v].append(f)
        bar = tqdm(total=n, desc=f"{self.cfg.encoder} {name[:24]}", unit="frame", disable=not self.progress,
                   leave=False)
        reads = ((i, self._read(crops, i, i + block)) for i in range(0, n, block))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="afwpipe-write") as pool:
            pending: Future | None = None
            for start, x in prefetch(reads, maxsize=2):
                feats = {}
                for v in writers:
                    f = self.encoder.encode_crops(apply_view(x, v))
                    _check_finite(f, f"{self.cfg.encoder} (view {v})", name, start)
                    feats[v] = f.astype(np.float16)
                if pending is not None:
                    pending.result()
                pending = pool.submit(write, feats)
                bar.update(len(x))
            if pending is not None:
                pending.result()
        for w in writers.values():
            w.close()
        bar.close()

    def _read(self, crops, start: int, stop: int):
        """Crops ``[start, stop)`` as ``uint8 [n, S, S, 3]``, in the prefetch thread (the forward never waits on
        decoding while the reader keeps up): Zarr's decompression, or JPEG decoding (``afwpipe.crop_codec``).
        On a CUDA device (and views ``[full]``) JPEG crops are decoded there by nvJPEG on a stream of their own, synchronised before
        the block is handed over, so no CPU decodes them and the forward's stream never waits on a decode."""
        device = torch.device(self.cfg.device)
        if device.type != "cuda" or not is_jpeg_array(crops) or self.cfg.views != [FULL]:  # views work on numpy
            return read_crops(crops, start, stop)
        stream = self._decode_stream(device)
        with torch.cuda.stream(stream):
            x = read_crops(crops, start, stop, device)
        stream.synchronize()
        x.record_stream(torch.cuda.default_stream(device))  # used there by the forward: not reused before it ends
        return x

    def _decode_stream(self, device):
        if getattr(self, "_stream", None) is None:
            self._stream = torch.cuda.Stream(device)
        return self._stream

    def _audio(self, times: np.ndarray, embs: dict, name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Encode the wave once per view into ``embs`` (view -> ``[T, D] float16`` array; an audio view through
        the encoder's log-Mel, :mod:`afwpipe.audio_views`, seeded by video and view); frames outside the audio
        track (before its first decoded sample, i.e. in the ``lead`` silence detect put before a stream that
        starts after the first frame, or after its end; or all, without audio) get zeros, present False.
        Returns ``present [T]`` and the encoder's extra per-frame arrays (``Encoder.frame_arrays``, of ``full``)."""
        audio = store.open_store(self.ws.audio, "r")[name]
        wave = audio["wave"][...]
        n, dim = len(times), embs[FULL].shape[1]
        if not audio.attrs.get("present", False) or wave.size == 0:
            log.warning("%s: no audio track; %s features are zeros with present=False", name, self.cfg.encoder)
            present = np.zeros(n, bool)
            return present, self.encoder.frame_arrays(np.zeros((n, dim), np.float32), present)
        rate = audio.attrs.get("sample_rate", AUDIO_SAMPLE_RATE)
        present = (times < wave.size / rate) & (times >= audio.attrs.get("lead", 0) / rate - 1e-9)
        extra = {}
        for v, emb in embs.items():
            self.encoder.mel_view = None if v == FULL else partial(apply_mel_view, view=v, rng=view_rng(name, v))
            try:
                feats = self.encoder.encode_audio(wave, times)
            finally:
                self.encoder.mel_view = None
            who = self.cfg.encoder if v == FULL else f"{self.cfg.encoder} (view {v})"
            _check_finite(feats, who, name)
            feats[~present] = 0.0
            if feats.shape != (n, dim):
                raise AfwpipeError(f"{who} on {name}: got features {feats.shape}, expected {(n, dim)}")
            emb[...] = feats.astype(np.float16)
            if v == FULL:
                extra = self.encoder.frame_arrays(feats, present)
        return present, extra


def run_extract(ws: store.Workspace, cfg: ExtractConfig, names: list[str] | None = None,
                progress: bool = True, scheduler: str | None = None) -> RunSummary:
    """Run one encoder on every indexed video (or ``names``); one failing video never stops the others.

    With ``scheduler`` (a Dask scheduler address) each video is one task on the cluster
    (``afwpipe.runner``; each worker loads the model once).

    Raises:
        EncoderError: unknown encoder (the message lists the registry).
        WeightsError: weights missing and not downloadable (the message says how to get them).
    """
    if not is_encoder(cfg.build_args()[0]):
        create_encoder(cfg.build_args()[0])  # raises EncoderError listing the registry
    index = ws.read_index()
    recs = [r for r in index.records if names is None or r.name in names]
    if scheduler_address(scheduler):
        store.open_store(ws.features(cfg.encoder), "a")  # create the root once, before concurrent writers
    factory = partial(EncoderWorker, ws, cfg, progress and scheduler is None)
    summary = RunSummary(step=f"extract {cfg.encoder}")
    summary.results = run_videos(factory, recs, f"extract-{cfg.encoder}", progress, scheduler,
                                 gpu=resolve_device(cfg.device).startswith("cuda"))
    done = [r for r in recs if store.is_complete(ws.features(cfg.encoder), r.name)]
    if done:
        summary.weights = store.open_store(ws.features(cfg.encoder), "r")[done[0].name].attrs["weights"]
    summary.write_failures(layout.failures_file(ws, "extract", ws.features(cfg.encoder)))
    return summary


def main(ws: store.Workspace, cfg: ExtractConfig, *, names: list[str] | None = None, accept_failures: bool = False,
         scheduler: str | None = None, progress: bool = True) -> int:
    """One encoder's extract step as ``afwpipe extract`` and ``python -m stages.extract`` run it:
    :func:`run_extract`, then the summary, the store and weights, and the failures printed. Returns the exit
    code (1 when a video failed, unless ``accept_failures``)."""
    summary = run_extract(ws, cfg, names=names, progress=progress, scheduler=scheduler)
    print(f"features in {ws.features(cfg.encoder)} (weights: {summary.weights})")
    return summary.report(accept_failures)
