"""Text stage speed: the whole `extract-text` stage vs the bare text encoder forward on the same words.

A random-weight BERT (``--layers`` x ``--hidden``, ``--max-positions`` tokens, a WordPiece vocabulary of
1,000 made-up words built with ``tokenizers``) saved with ``save_pretrained`` and loaded as
``text:bench-bert`` from that folder; one video with a synthetic transcript of ``--words`` words (2.5
words/s, each 0.3 s long) and 25 fps frames.
  stage words/s   = words / wall time of ``TextWorker.run_video`` (read the transcript and frame times,
                    encode, spread over frames, write)
  forward words/s = words / wall time of ``encode_words`` on the same words already in memory
  ratio           = stage / forward (1.0: the encoder forward is the only cost)

Usage: python benchmarks/text_speed.py [--words 1500] [--repeats 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from afwpipe import store
from afwpipe.asr import Word
from afwpipe.asr.transcripts import read_words, write_words
from afwpipe.text import TextConfig, TextWorker
from common import write_index

VOCAB = [f"w{i}" for i in range(1000)]


def bench_bert(folder: Path, layers: int = 4, hidden: int = 256, max_positions: int = 128) -> Path:
    """Save a random BERT and its fast tokenizer to ``folder``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *VOCAB])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2),
                                                                                             ("[SEP]", 3)])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]",
                            model_max_length=max_positions).save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden,
                         max_position_embeddings=max_positions)).save_pretrained(folder)
    return folder


def fake_transcript_stage(root: Path, words: int, fps: float = 25.0, asr: str = "bench") -> store.Workspace:
    """A workspace with one video: ``words`` words at 2.5 words/s in ``transcripts/<asr>.zarr`` and the frame
    times of its duration in ``faces.zarr``."""
    ws = store.Workspace(root)
    rng = np.random.default_rng(0)
    starts = np.arange(words) / 2.5
    g = store.begin_video(ws.transcripts(asr), "v", {"asr_config": {"name": asr}})
    write_words(g, [Word(VOCAB[k], s, s + 0.3, 1.0) for k, s in zip(rng.integers(0, len(VOCAB), words), starts)])
    store.mark_complete(g)
    frames = int(np.ceil((starts[-1] + 1.0) * fps)) if words else 25
    f = store.begin_video(ws.faces, "v")
    store.write_time_array(f, "times", np.arange(frames) / fps)
    store.mark_complete(f)
    write_index(ws, [{"name": "v", "n_frames": frames}])
    return ws


def measure(ws: store.Workspace, folder: Path, device: str = "cpu", repeats: int = 2, batch_size: int = 1,
            asr: str = "bench") -> dict:
    """Stage vs bare forward on the one video of ``ws``, both warm, order alternating; medians and lists."""
    t = time.perf_counter()
    worker = TextWorker(ws, TextConfig("text:bench-bert", asr=asr, weights=str(folder), device=device))
    build_s = time.perf_counter() - t
    enc = worker.encoder
    enc.batch_size = batch_size
    words = [w.word for w in read_words(ws.transcripts(asr), "v")]
    enc.encode_words(words[:32])  # warm-up
    rec = ws.read_index().records[0]
    n = len(words)

    def run_stage() -> float:
        shutil.rmtree(worker.out, ignore_errors=True)
        t = time.perf_counter()
        worker.run_video(rec)
        return n / (time.perf_counter() - t)

    def run_forward() -> float:
        t = time.perf_counter()
        enc.encode_words(words)
        return n / (time.perf_counter() - t)

    st, fw = [], []
    for i in range(repeats):
        for f in ((run_stage, run_forward) if i % 2 == 0 else (run_forward, run_stage)):
            (st if f is run_stage else fw).append(f())
    return {"words": n, "chunks": len(enc.chunks(words)), "batch_size": batch_size, "model_build_s": build_s,
            "stage_fps": float(np.median(st)), "forward_fps": float(np.median(fw)), "stage_all": st,
            "forward_all": fw, "ratio": float(np.median(st) / np.median(fw))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--words", type=int, default=1500)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = bench_bert(Path(tmp) / "bert")
        r = measure(fake_transcript_stage(Path(tmp) / "ws", args.words), folder, args.device, args.repeats)
    print(json.dumps(r))


if __name__ == "__main__":
    main()
