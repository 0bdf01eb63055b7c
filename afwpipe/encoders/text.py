"""``text:<hf-id>``: contextual word embeddings from a transformers text encoder (BERT, RoBERTa, ...)
over a video's transcript.

The transcript's words (in time order) are the input sequence, tokenised with the model's fast
tokenizer as pre-split words (``is_split_into_words=True``), in consecutive chunks of whole words that
fit the model's length (``min(tokenizer.model_max_length, max_position_embeddings - 2)`` tokens, minus
the special tokens), so each word sees its neighbours within its chunk. A word's embedding is the mean
of its sub-token states of the last hidden layer, the word-level pooling of word-piece models used by
e.g. Devlin et al. 2019 (BERT, §5.3: feature-based NER, which takes word representations from the
hidden layers) and ``transformers``' ``word_ids()`` alignment; the first-sub-token choice of BERT's NER is
the other common option. A word the tokenizer turns into no token gets zeros.

Weights (``afwpipe.encoders.weights``): ``--weights DIR`` (a folder written by ``save_pretrained``
holding the model and its tokenizer) > the Hugging Face hub cache of ``<hf-id>`` > download when online >
an error saying how to get the folder. ``--weights random``: an untrained model of the cached config and
tokenizer of ``<hf-id>`` (a smoke test, recorded as ``random``).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import EncoderError, WeightsError
from .base import Encoder, EncoderConfig
from .registry import ENCODERS
from .weights import HubRepo, offline, resolve_weights

default_cfg = EncoderConfig(name="text:<hf-id>", modality="text", dim=0,
                            extra={"pooling": "mean of sub-token states, last hidden layer",
                                   "context": "transcript words in chunks of the model's max length"})


class TextEncoder(Encoder):
    """A transformers text model mapping words to contextual word embeddings (:meth:`encode_words`)."""

    batch_size = 8  # chunks per forward pass

    def __init__(self, cfg: EncoderConfig, tokenizer, model: torch.nn.Module, device: str = "cpu"):
        super().__init__(cfg, device)
        if not getattr(tokenizer, "is_fast", False):
            raise EncoderError(f"{cfg.name}: needs a fast tokenizer (word_ids()); got {type(tokenizer).__name__}")
        self.tokenizer = tokenizer
        self.model = model.eval().to(self.device)
        max_pos = getattr(model.config, "max_position_embeddings", None) or tokenizer.model_max_length
        self.max_tokens = min(int(tokenizer.model_max_length), int(max_pos) - 2) - tokenizer.num_special_tokens_to_add()

    def chunks(self, words: list[str]) -> list[tuple[int, int]]:
        """Consecutive ``[lo, hi)`` word ranges whose tokens fit :attr:`max_tokens` (a longer word is cut
        by truncation inside its own chunk)."""
        ids = self.tokenizer(words, is_split_into_words=True, add_special_tokens=False, verbose=False).word_ids()
        counts = np.bincount([i for i in ids if i is not None], minlength=len(words))
        out, lo, used = [], 0, 0
        for i, c in enumerate(counts):
            if i > lo and used + c > self.max_tokens:
                out.append((lo, i))
                lo, used = i, 0
            used += int(c)
        out.append((lo, len(words)))
        return out

    def encode_words(self, words: list[str]) -> np.ndarray:
        """float32 [W, D] contextual embeddings of ``words`` (see the module docstring); [0, D] for none."""
        out = np.zeros((len(words), self.dim), np.float32)
        if not words:
            return out
        spans = self.chunks(list(words))
        with torch.inference_mode():
            for b in range(0, len(spans), self.batch_size):
                batch = spans[b:b + self.batch_size]
                enc = self.tokenizer([list(words[lo:hi]) for lo, hi in batch], is_split_into_words=True,
                                     padding=True, truncation=True, max_length=self.max_tokens + 2,
                                     return_tensors="pt")
                states = self.model(**{k: v.to(self.device) for k, v in enc.items()}).last_hidden_state.float().cpu()
                for j, (lo, hi) in enumerate(batch):
                    wid = np.array([-1 if w is None else w for w in enc.word_ids(j)])
                    for w in range(hi - lo):
                        sel = wid == w
                        if sel.any():
                            out[lo + w] = states[j, torch.from_numpy(sel)].mean(0).numpy()
        return out

    def encode_crops(self, crops):
        raise EncoderError(f"{self.name} is a text encoder: run it with `afwpipe extract-text --encoder {self.name}`")

    encode_audio = encode_crops


def _load(name: str, folder, random: bool, model_id: str):
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    try:
        if random:
            source = dict(pretrained_model_name_or_path=model_id, local_files_only=offline())
            tokenizer = AutoTokenizer.from_pretrained(**source, use_fast=True)
            torch.manual_seed(0)
            return tokenizer, AutoModel.from_config(AutoConfig.from_pretrained(**source))
        return AutoTokenizer.from_pretrained(folder, use_fast=True), AutoModel.from_pretrained(folder)
    except (OSError, ValueError) as e:
        where = f"the config and tokenizer of {model_id}" if random else str(folder)
        raise WeightsError(f"{name}: cannot load {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}\n"
                           f"To get them:\n{HubRepo(model_id).how_to_get()}") from e


def create_text_encoder(model_id: str, weights=None, device: str = "cpu") -> TextEncoder:
    """Encoder ``text:<model_id>``; ``weights``: None (hub cache of ``model_id``, download when online), a
    ``save_pretrained`` folder with the tokenizer, or ``"random"``.

    Raises:
        WeightsError: not cached and not downloadable, or the folder does not load (says how to get it).
        EncoderError: the tokenizer is not a fast one.
    """
    name = f"text:{model_id}"
    resolved = resolve_weights(name, HubRepo(model_id, patterns=("*.json", "*.txt", "*.model")), weights)
    tokenizer, model = _load(name, resolved.path, resolved.random, model_id)
    cfg = default_cfg.with_(name=name, dim=int(model.config.hidden_size), weights=resolved.identity,
                            extra={**default_cfg.extra, "model_id": model_id, "model_type": model.config.model_type})
    return TextEncoder(cfg, tokenizer, model, device)


ENCODERS.register_family("text:", create_text_encoder, describe="<hf-id>", default_cfg=default_cfg,
                         source="hf:<hf-id> or a save_pretrained folder (--weights DIR)")
