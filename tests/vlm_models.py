"""Tiny random-weight image-text-to-text models saved with ``save_pretrained``, built offline from their config
classes, for tests/test_describe.py and benchmarks/describe_speed.py (no download).

Each processor needs a tokenizer: a ``tokenizers`` WordLevel model over a few words and the family's special tokens
(image placeholder, turn markers), wrapped in ``PreTrainedTokenizerFast``; and a chat template, a short Jinja
template that places the family's image placeholder where each ``{"type": "image"}`` entry is, as the real
templates do. Families:

- ``qwen2_vl``: Qwen2-VL (``Qwen2VLConfig``, ``Qwen2VLProcessor``: ``<|vision_start|><|image_pad|><|vision_end|>``
  per image, expanded by the processor to one ``<|image_pad|>`` per 2x2 merged patch);
- ``idefics3``: Idefics3 (``Idefics3Config``, ``Idefics3Processor``: ``<image>`` per image, expanded to
  ``image_seq_len`` tokens between ``<fake_token_around_image>``; SmolVLM is this architecture, but
  ``SmolVLMProcessor`` needs the ``num2words`` package, which the environment does not have).
"""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = "the person smiles looks left right nods head hand gesture frowns slowly".split()


def _tokenizer(special: list[str], extra: list[str], pad: str, eos: str):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(special + ["[UNK]"] + WORDS + extra)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token=pad, eos_token=eos)
    fast.add_special_tokens({"additional_special_tokens": [s for s in special if s not in (pad, eos)]})
    return fast


QWEN_TEMPLATE = ("{% for m in messages %}<|im_start|> {{ m['role'] }} {% for c in m['content'] %}"
                 "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|> {% else %}{{ c['text'] }} "
                 "{% endif %}{% endfor %}<|im_end|> {% endfor %}{% if add_generation_prompt %}<|im_start|> assistant "
                 "{% endif %}")


def tiny_qwen2_vl(out: Path, hidden: int = 32, layers: int = 2) -> Path:
    """A ``layers``-layer Qwen2-VL (``hidden`` wide; one vision block, patch 14, 2x2 merge) with its processor in
    ``out``."""
    import transformers as t

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
               "<|video_pad|>"]
    tok = _tokenizer(special, ["user", "assistant"], pad="<|endoftext|>", eos="<|im_end|>")
    ids = {s: tok.convert_tokens_to_ids(s) for s in special}
    t.Qwen2VLProcessor(image_processor=t.Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16),
                       tokenizer=tok, video_processor=t.Qwen2VLVideoProcessor(),
                       chat_template=QWEN_TEMPLATE).save_pretrained(out)
    cfg = t.Qwen2VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, bos_token_id=None,
                         rope_scaling={"type": "mrope", "mrope_section": [hidden // 32, hidden // 32, hidden // 16]},
                         eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=hidden, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, in_chans=3),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    return _speaking(out, cfg)


IDEFICS3_TEMPLATE = ("<|im_start|>{% for m in messages %}{{ m['role'] | capitalize }}:{% for c in m['content'] %}"
                     "{% if c['type'] == 'image' %}<image>{% else %} {{ c['text'] }}{% endif %}{% endfor %}"
                     "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}")
#: image tokens per image of the tiny Idefics3: (32 / 8)^2 patches, pixel-shuffled by scale_factor 2
IDEFICS3_IMAGE_SEQ_LEN = 4


def tiny_idefics3(out: Path) -> Path:
    """A 2-layer Idefics3 (Llama text model, hidden 32; SigLIP vision, 32 px images, patch 8) with its processor."""
    import transformers as t

    special = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>",
               "<global-img>"]
    tok = _tokenizer(special, ["User:", "Assistant:"], pad="<|endoftext|>", eos="<end_of_utterance>")
    t.Idefics3Processor(image_processor=t.Idefics3ImageProcessor(do_image_splitting=False,
                                                                 max_image_size={"longest_edge": 32},
                                                                 size={"longest_edge": 32}),
                        tokenizer=tok, image_seq_len=IDEFICS3_IMAGE_SEQ_LEN,
                        chat_template=IDEFICS3_TEMPLATE).save_pretrained(out)
    cfg = t.Idefics3Config(
        text_config=dict(model_type="llama", vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, bos_token_id=None,
                         eos_token_id=tok.convert_tokens_to_ids("<end_of_utterance>"), pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        scale_factor=2, image_token_id=tok.convert_tokens_to_ids("<image>"), pad_token_id=tok.pad_token_id)
    return _speaking(out, cfg)


def _speaking(out: Path, cfg, seeds=range(50)) -> Path:
    """Save the first random init (seed 0, 1, ...) of ``cfg`` whose greedy answer to four noise images starts with
    a word, not a special token (an untrained model often ends at once, which would leave every text empty)."""
    import numpy as np
    import transformers as t

    proc = t.AutoProcessor.from_pretrained(out)
    images = [np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8) for i in range(4)]
    msgs = [{"role": "user", "content": [{"type": "image"}] * 4 + [{"type": "text", "text": "the person"}]}]
    enc = proc(text=[proc.apply_chat_template(msgs, add_generation_prompt=True)], images=[images], return_tensors="pt")
    for seed in seeds:
        torch.manual_seed(seed)
        model = t.AutoModelForImageTextToText.from_config(cfg).eval()
        with torch.no_grad():
            first = model.generate(**enc, do_sample=False, max_new_tokens=1)[0, -1]
        if int(first) not in proc.tokenizer.all_special_ids:
            model.save_pretrained(out)
            return out
    raise RuntimeError(f"no seed in {seeds} gives a model that answers with a word")


FAMILIES = {"qwen2_vl": tiny_qwen2_vl, "idefics3": tiny_idefics3}
