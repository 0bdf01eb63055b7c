"""Vision-language models that describe what they see: registry :data:`VLMS` (family ``hf:<repo_id>``).

``hf:<repo_id>``: any ``transformers`` image-text-to-text model (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Idefics3,
SmolVLM, LLaVA, Gemma 3, ...) loaded with ``AutoProcessor`` and ``AutoModelForImageTextToText``. One request is one
user turn holding the segment's frames as images, in time order, then the prompt; it is rendered with the
processor's own chat template (``processor.apply_chat_template``, the model card's recipe), so every model gets
the image placeholders and turn markers it was trained with. Decoding is greedy (``do_sample=False``,
``num_beams=1``) with at most ``max_new_tokens`` new tokens; the answer is the decoded new tokens without special
tokens, stripped. Several segments go through one ``generate`` call, left-padded.

Weights (``afwpipe.encoders.weights``): ``--weights DIR`` (a folder written by ``save_pretrained`` holding the
model, its processor and its chat template) > the Hugging Face hub cache of ``<repo_id>`` > a download when online
> a :class:`~afwpipe.errors.WeightsError` naming the model, the cache folder searched and how to fill it.
``--weights random``: an untrained model of the cached config and processor of ``<repo_id>`` (tests; recorded as
``random``). On CUDA the model runs in bfloat16, on the CPU in float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .encoders.weights import HubRepo, offline, resolve_weights
from .errors import DescribeError, WeightsError
from .registry import Registry

VLMS = Registry("vision-language model", DescribeError)
#: files of a model repo the processor and model need (sharded checkpoints: the index and every shard)
HUB_PATTERNS = ("*.json", "*.txt", "*.jinja", "*.model", "*.safetensors")
HUB_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


class HFVisionLanguageModel:
    """A transformers image-text-to-text model with its processor.

    Args:
        name: ``hf:<repo_id>``.
        processor: the model's ``AutoProcessor`` (tokenizer, image processor, chat template).
        model: the ``AutoModelForImageTextToText`` model.
        weights: the weights identity (hub id ``@commit``, ``sha256:<hex>`` of a folder, or ``random``).
        device: torch device string.

    Raises:
        DescribeError: the processor has no chat template.
    """

    def __init__(self, name: str, processor, model: torch.nn.Module, weights: str, device: str = "cpu"):
        if not getattr(processor, "chat_template", None):
            raise DescribeError(f"{name}: its processor has no chat template (chat_template.jinja / .json of the "
                                f"model folder); a VLM is prompted through its own template")
        self.name, self.processor, self.weights, self.device = name, processor, weights, device
        self.model = model.eval().to(device)
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.padding_side = "left"  # decoder-only batches: new tokens follow every prompt directly

    @property
    def config(self) -> dict:
        """Identity recorded in the descriptions store: name, weights, model type, processor class."""
        return {"name": self.name, "weights": self.weights, "model_type": self.model.config.model_type,
                "processor": type(self.processor).__name__}

    def prompt_text(self, n_images: int, prompt: str) -> str:
        """The chat-templated text of one request: a user turn of ``n_images`` images then ``prompt``, followed by
        the template's generation prompt (the assistant turn's opening)."""
        messages = [{"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def inputs(self, segments: Sequence[Sequence[np.ndarray]], prompt: str):
        """The processor's batch (``input_ids``, ``attention_mask``, ``pixel_values``, ...) for ``segments``: one
        request per segment, each a non-empty list of ``uint8 [H, W, 3]`` RGB frames.

        Raises:
            DescribeError: a segment without frames.
        """
        if any(len(s) == 0 for s in segments):
            raise DescribeError(f"{self.name}: a segment without frames cannot be described")
        texts = [self.prompt_text(len(s), prompt) for s in segments]
        return self.processor(text=texts, images=[list(s) for s in segments], padding=True, return_tensors="pt")

    def generate(self, inputs, max_new_tokens: int) -> list[str]:
        """Greedy answers (module docstring) to a batch of :meth:`inputs`."""
        inputs = inputs.to(self.device, dtype=self.model.dtype)  # pixels in the model's dtype (bfloat16 on CUDA)
        with torch.inference_mode():
            out = self.model.generate(**inputs, do_sample=False, num_beams=1, max_new_tokens=max_new_tokens)
        new = out[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in self.processor.batch_decode(new, skip_special_tokens=True)]

    def describe(self, segments: Sequence[Sequence[np.ndarray]], prompt: str, max_new_tokens: int) -> list[str]:
        """One answer per segment (:meth:`inputs` then :meth:`generate`)."""
        return self.generate(self.inputs(segments, prompt), max_new_tokens)


def _load(name: str, folder, random: bool, repo_id: str, device: str):
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    try:
        if random:
            source = dict(pretrained_model_name_or_path=repo_id, local_files_only=offline())
            processor = AutoProcessor.from_pretrained(**source)
            torch.manual_seed(0)
            return processor, AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(**source), dtype=dtype)
        return AutoProcessor.from_pretrained(folder), AutoModelForImageTextToText.from_pretrained(folder, dtype=dtype)
    except (OSError, ValueError, KeyError) as e:
        where = f"the config and processor of {repo_id}" if random else str(folder)
        raise WeightsError(f"{name}: cannot load {where} as an image-text-to-text model: "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}\n"
                           f"To get it:\n{HubRepo(repo_id).how_to_get()}") from e


def create_hf_vlm(repo_id: str, weights=None, device: str = "cpu") -> HFVisionLanguageModel:
    """VLM ``hf:<repo_id>``; ``weights``: None (hub cache of ``repo_id``, download when online), a
    ``save_pretrained`` folder with the processor, or ``"random"`` (tests).

    Raises:
        WeightsError: not cached and not downloadable (names the model and the cache folder searched), or the
            folder does not load as an image-text-to-text model.
        DescribeError: the processor has no chat template.
    """
    name = f"hf:{repo_id}"
    source = HubRepo(repo_id, patterns=HUB_PATTERNS, weight_files=HUB_WEIGHT_FILES)
    resolved = resolve_weights(name, source, weights)
    processor, model = _load(name, resolved.path, resolved.random, repo_id, device)
    return HFVisionLanguageModel(name, processor, model, resolved.identity, device)


VLMS.register_family("hf:", create_hf_vlm, describe="<repo_id>",
                     source="the Hugging Face hub cache of <repo_id>, or a save_pretrained folder (--weights DIR)")


def create_vlm(name: str, weights=None, device: str = "cpu") -> HFVisionLanguageModel:
    """Build VLM ``name`` (``hf:<repo_id>``).

    Raises:
        DescribeError: ``name`` is not of a registered family (the message lists them).
        WeightsError: see :func:`create_hf_vlm`.
    """
    return VLMS.create(name, weights=weights, device=device)
