"""``timm:<model_id>``: each model's own preprocessing from its timm pretrained config, a smaller input
size, and a Transformer block's output (``layer``). Large models are built with random weights (no
weights can be downloaded here) and run at most once, at 224 px with batch 1."""

import numpy as np
import pytest
import torch

from afwpipe.encoders import create_encoder
from afwpipe.errors import EncoderError

from test_encoders_registry import _smooth_crops

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
OPENAI_CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))  # CLIP's repo, clip.py
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # BEiT (unilm/beit, IMAGENET_INCEPTION mean/std)

# model id -> (pretrained input size, interpolation, (mean, std), patch size, width): the published values
LARGE = {
    "vit_large_patch14_dinov2.lvd142m": (518, "bicubic", IMAGENET, 14, 1024),
    "beit_large_patch16_224.in22k_ft_in22k_in1k": (224, "bicubic", HALF, 16, 1024),
    "vit_large_patch14_clip_224.openai": (224, "bicubic", OPENAI_CLIP, 14, 1024),
}


def _timm_input(model_id: str, crops: np.ndarray, size: int) -> torch.Tensor:
    """The model input as timm's own eval transform makes it (PIL resize of the whole crop: crop_pct 1)."""
    import timm.data
    from PIL import Image
    cfg = timm.data.resolve_data_config({}, model=None, pretrained_cfg=timm.models.get_pretrained_cfg(model_id).to_dict())
    transform = timm.data.create_transform(**{**cfg, "input_size": (3, size, size), "crop_pct": 1.0})
    return torch.stack([transform(Image.fromarray(c)) for c in crops])


@pytest.mark.parametrize("model_id", sorted(LARGE))
def test_large_backbones_get_their_own_preprocessing_at_any_input_size(model_id):
    size, interp, (mean, std), patch, width = LARGE[model_id]
    dinov2 = "dinov2" in model_id
    enc = create_encoder(f"timm:{model_id}", weights="random", input_size=224, layer=-4 if dinov2 else None)
    cfg = enc.config
    assert (cfg["input_size"], cfg["interpolation"], cfg["patch_size"], cfg["dim"]) == (224, interp, patch, width)
    np.testing.assert_allclose(cfg["mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(cfg["std"], std, rtol=1e-6)
    assert tuple(enc.model.patch_embed.img_size) == (224, 224)  # the model itself runs at 224
    assert enc.model.patch_embed.num_patches == (224 // patch) ** 2
    assert enc.model.pretrained_cfg["input_size"][-1] == size  # DINOv2's pretrained 518 is still known
    # the crops become what timm's own transform makes of them, at 224 and at 112 -> 224
    for side in (224, 112):
        crops = _smooth_crops(side)
        got = enc.preprocess(torch.as_tensor(crops).permute(0, 3, 1, 2).float() / 255)
        np.testing.assert_allclose(got.numpy(), _timm_input(model_id, crops, 224).numpy(),
                                   atol=1.25 / 255 / min(std))
    if dinov2:  # one forward of ViT-L at 224, batch 1, from the fourth block from the end
        assert cfg["layer"] == -4
        out = enc.encode_crops(_smooth_crops(224, n=1))
        assert out.shape == (1, 1024) and np.isfinite(out).all()


def _by_hand(model, x: torch.Tensor, blocks: list[int]) -> torch.Tensor:
    """Block outputs written out from the ViT's modules (not forward_intermediates): patch embedding,
    position embedding, blocks, final norm, patch tokens (prefix tokens dropped) averaged, then blocks averaged."""
    h = model.norm_pre(model._pos_embed(model.patch_embed(x)))
    outs = []
    for i, blk in enumerate(model.blocks):
        h = blk(h)
        if i in blocks:
            outs.append(model.norm(h)[:, model.num_prefix_tokens:].mean(1))
    return torch.stack(outs).mean(0)


@pytest.mark.parametrize("layer,blocks", [(-1, [11]), ("4-6", [4, 5, 6]), ([-3, -1], [9, 10, 11])])
def test_layer_is_the_mean_patch_token_of_the_normalised_block_output(layer, blocks):
    torch.manual_seed(0)
    enc = create_encoder("timm:vit_small_patch14_dinov2.lvd142m", weights="random", input_size=112, layer=layer)
    crops = _smooth_crops(112)
    with torch.inference_mode():
        x = enc.preprocess(torch.as_tensor(crops).permute(0, 3, 1, 2).float() / 255)
        want = _by_hand(enc.model, x, blocks)
        if layer == -1:  # the last block is also timm's forward_features, patch tokens averaged (the mae recipe)
            tokens = enc.model.forward_features(x)
            np.testing.assert_allclose(tokens[:, enc.model.num_prefix_tokens:].mean(1), want, atol=1e-5)
    np.testing.assert_allclose(enc.encode_crops(crops), want.numpy(), atol=1e-4)
    assert enc.config["layer"] == {"4-6": "4-6", "[-3, -1]": "9-11"}.get(str(layer), layer)


def test_a_checkpoint_at_518_loads_into_a_224_model_and_bad_options_are_errors(tmp_path):
    from safetensors.torch import save_file
    from afwpipe.fetch import sha256_file
    model_id = "vit_small_patch14_dinov2.lvd142m"
    torch.manual_seed(0)
    default = create_encoder(f"timm:{model_id}", weights="random")  # DINOv2's pretrained size: 518 = 37 x 14
    assert default.config["input_size"] == 518 and default.model.patch_embed.img_size == (518, 518)
    sd = default.model.state_dict()
    assert sd["pos_embed"].shape[1] == 1 + 37 * 37
    path = tmp_path / "model.safetensors"
    save_file(sd, str(path))
    enc = create_encoder(f"timm:{model_id}", weights=path, input_size=224)
    assert enc.model.pos_embed.shape[1] == 1 + 16 * 16 and enc.config["weights"] == f"sha256:{sha256_file(path)}"
    torch.testing.assert_close(enc.model.blocks[0].attn.qkv.weight, sd["blocks.0.attn.qkv.weight"])
    with pytest.raises(EncoderError, match="not a multiple of the patch size 14"):
        create_encoder(f"timm:{model_id}", weights="random", input_size=225)
    with pytest.raises(EncoderError, match="layer=12 out of range"):
        create_encoder(f"timm:{model_id}", weights="random", layer=12)
    with pytest.raises(EncoderError, match="Transformer with blocks"):
        create_encoder("timm:resnet18", weights="random", layer=-1)
    # a CNN takes any input size: only the resize of the crops changes
    assert create_encoder("timm:resnet18", weights="random", input_size=112).encode_crops(_smooth_crops(64)).shape == (2, 512)
