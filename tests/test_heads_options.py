"""Head options and the blocks heads are built from: causal TCN, gated fusion, mixture-of-experts outputs,
the masks of ``xattn``, ``transformers``' Mamba, and the ``stack`` head. Tiny widths, no training."""

import pytest
import torch
from torch import nn

from afwpipe.errors import AfwpipeError
from afwpipe.heads import FUSIONS, TEMPORAL, create_head
from afwpipe.heads.common import MixtureOfExperts
from afwpipe.heads.mamba import reverse_real_frames

IN_DIMS = {"video": 6, "audio": 4}
ALL_TASKS = ["au", "expr", "va"]


def _inputs(b=2, k=20, seed=0, dims=IN_DIMS):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(b, k, d, generator=g) for n, d in dims.items()}


def _build(name, dims=IN_DIMS, seed=0, **kw):
    torch.manual_seed(seed)
    return create_head(name, dims, ALL_TASKS, **kw).eval()


def _future_changed(head, t):
    """Outputs of ``head`` on a clip and on the same clip with frames > t replaced by noise."""
    x = _inputs()
    x2 = {n: v.clone() for n, v in x.items()}
    for v in x2.values():
        v[:, t + 1:] = torch.randn_like(v[:, t + 1:]) * 10
    with torch.no_grad():
        return head(x), head(x2)


# -- causal tcn ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, kw", [
    ("tcn", dict(channels=8, mlp_dim=8, causal=True)),
    ("tcn", dict(channels=8, mlp_dim=8, causal=True, kernel_size=2, dilations=(1, 2, 4))),  # even: only causal
    ("stack", dict(stack=["tcn"], d_model=8, mlp_dim=8, blocks={"tcn": {"causal": True}})),
    ("mamba", dict(d_model=8, n_layers=2, state_size=4)),  # the scan runs forward in time
])
def test_causal_heads_never_see_future_frames(name, kw):
    head, t = _build(name, **kw), 9
    a, b = _future_changed(head, t)
    for task in a:
        assert torch.allclose(a[task][:, :t + 1], b[task][:, :t + 1], atol=1e-6, rtol=0), task  # past unchanged
        assert not torch.allclose(a[task][:, t + 1:], b[task][:, t + 1:])


@pytest.mark.parametrize("name, kw", [
    ("tcn", dict(channels=8, mlp_dim=8)),
    ("mamba", dict(d_model=8, n_layers=1, state_size=4, bidirectional=True)),
])
def test_non_causal_heads_see_future_frames(name, kw):
    head, t = _build(name, **kw), 9
    a, b = _future_changed(head, t)
    assert not torch.allclose(a["va"][:, t], b["va"][:, t])  # frame t sees t + 1 (kernel 3, dilation 1)


def test_even_kernel_needs_causal():
    with pytest.raises(AfwpipeError, match="odd.*causal"):
        create_head("tcn", IN_DIMS, ["au"], channels=8, kernel_size=2)


# -- fusion option -----------------------------------------------------------------------------------------

def test_fusion_registry_and_unknown_fusion():
    assert FUSIONS.list() == ["concat", "gated", "msf", "xattn"]
    assert TEMPORAL.list() == ["mamba", "tcn", "transformer"]
    with pytest.raises(AfwpipeError, match="unknown fusion block 'sum'; registered: concat, gated, msf, xattn"):
        create_head("tmf", IN_DIMS, ["au"], d_model=8, n_heads=2, fusion="sum")
    with pytest.raises(AfwpipeError, match="bad fusion_kwargs"):
        create_head("tcn", IN_DIMS, ["au"], channels=8, fusion="gated", fusion_kwargs={"nope": 1})


def test_concat_fusion_keeps_the_state_dict_of_the_heads():
    """``fusion: concat`` adds no parameter: tmf/tcn checkpoints written before the option still load."""
    head = create_head("tcn", IN_DIMS, ["au"], channels=8, mlp_dim=8)
    assert not any(k.startswith("fusion.") for k in head.state_dict())
    assert head.proj.in_channels == 10


def test_gated_fusion_weights_absent_modalities_zero():
    gated = FUSIONS.create("gated", IN_DIMS, 8).eval()
    x = _inputs(b=1, k=4)
    present = {"video": torch.tensor([[True, False, True, False]]), "audio": torch.tensor([[True, True, False, False]])}
    h = {n: torch.tanh(gated.proj[n](x[n])) for n in IN_DIMS}
    w = gated.weights(h, present)[0]
    assert torch.allclose(w[0].sum(), torch.tensor(1.0))
    assert w[1].tolist() == [0.0, 1.0] and w[2].tolist() == [1.0, 0.0] and w[3].tolist() == [0.0, 0.0]
    # reference: a softmax over the present modalities' gate logits only, computed by hand
    logits = torch.cat([gated.gate[n](h[n]) for n in IN_DIMS], -1)[0, 0]
    assert torch.allclose(w[0], torch.exp(logits) / torch.exp(logits).sum(), atol=1e-6)
    out = gated(x, torch.ones(1, 4, dtype=torch.bool), present)[0]
    assert torch.allclose(out[1], h["audio"][0, 1]) and torch.equal(out[3], torch.zeros(8))


@pytest.mark.parametrize("name", ["tmf", "tcn", "mamba", "stack"])
def test_gated_fusion_option_of_every_concat_head(name):
    small = {"tmf": dict(d_model=8, n_heads=2, n_layers=1), "tcn": dict(channels=8, mlp_dim=8),
             "mamba": dict(d_model=8, n_layers=1, state_size=4), "stack": dict(d_model=8, mlp_dim=8)}[name]
    head = _build(name, fusion="gated", **small)
    assert "fusion.gate.video.weight" in head.state_dict()
    x = _inputs()
    present = {"video": torch.rand(2, 20) > 0.5, "audio": torch.ones(2, 20, dtype=torch.bool)}
    x2 = {n: v.clone() for n, v in x.items()}
    x2["video"][~present["video"]] = 1e3  # what an absent modality holds must not matter
    with torch.no_grad():
        a, b = head(x, None, present), head(x2, None, present)
    for t in a:
        assert torch.isfinite(a[t]).all() and torch.allclose(a[t], b[t], atol=1e-5)


# -- mixture of experts ------------------------------------------------------------------------------------

def test_experts_option_is_a_softmax_mixture_of_linear_experts():
    head = _build("tcn", channels=8, mlp_dim=8, experts=3)
    layer = head.task_layers["expr"]
    assert isinstance(layer, MixtureOfExperts) and isinstance(_build("tcn", channels=8).task_layers["expr"], nn.Linear)
    h = torch.randn(2, 5, 8)
    g = torch.softmax(h @ layer.gate.weight.T + layer.gate.bias, -1)
    assert torch.allclose(g.sum(-1), torch.ones(2, 5))
    w, bias = layer.experts.weight.view(3, 8, 8), layer.experts.bias.view(3, 8)  # [expert, out, hidden]
    expected = torch.einsum("bke,eoh,bkh->bko", g, w, h) + torch.einsum("bke,eo->bko", g, bias)
    assert torch.allclose(layer(h), expected, atol=1e-5)
    with pytest.raises(AfwpipeError, match="experts must be"):
        create_head("tcn", IN_DIMS, ["au"], channels=8, experts=0)


# -- xattn masks ---------------------------------------------------------------------------------------------

XATTN = dict(d_model=16, n_heads=2, n_layers=1, xattn_layers=2)
THREE = {"video": 6, "audio": 4, "text": 5}


@pytest.mark.parametrize("fusion", ["gated", "concat"])
def test_xattn_ignores_what_an_absent_modality_holds(fusion):
    """A modality absent in some frames (present False) is masked out of every attention and of the fusion:
    zeros there or large noise give the same outputs on every frame."""
    head = _build("xattn", THREE, fusion=fusion, **XATTN)
    x = _inputs(dims=THREE)
    present = {n: torch.ones(2, 20, dtype=torch.bool) for n in THREE}
    present["audio"][0, 5:12] = False
    present["text"][1, ::3] = False
    zeroed, noisy = ({n: v.clone() for n, v in x.items()} for _ in range(2))
    for n in THREE:
        zeroed[n][~present[n]] = 0.0
        noisy[n][~present[n]] = torch.randn(int((~present[n]).sum()), THREE[n]) * 100
    with torch.no_grad():
        a, b = head(zeroed, None, present), head(noisy, None, present)
    for t in a:
        assert torch.isfinite(a[t]).all() and torch.allclose(a[t], b[t], atol=1e-5)


@pytest.mark.parametrize("fusion", ["gated", "concat"])
def test_xattn_with_a_modality_absent_everywhere_equals_the_head_without_it(fusion):
    """Dropping ``audio`` from a whole clip gives exactly the outputs of an xattn head over video and text
    alone with the same weights (the audio projections, pairs and gate removed; for ``concat`` the audio
    columns of the fusion's projection)."""
    full = _build("xattn", THREE, fusion=fusion, **XATTN)
    without = create_head("xattn", {"video": 6, "text": 5}, ALL_TASKS, fusion=fusion, **XATTN).eval()
    state = {k: v for k, v in full.state_dict().items() if "audio" not in k}
    if fusion == "concat":  # streams video, audio, text of width 16 side by side
        w = state["fusion.combine.weight"]
        state["fusion.combine.weight"] = torch.cat([w[:, :16], w[:, 32:]], dim=1)
    without.load_state_dict(state)  # strict: the same weights, minus every audio entry
    x = _inputs(dims=THREE)
    present = {n: torch.ones(2, 20, dtype=torch.bool) for n in THREE}
    present["audio"][:] = False
    present["text"][0, 3:8] = False
    with torch.no_grad():
        a = full(x, None, present)
        b = without({n: x[n] for n in ("video", "text")}, None, {n: present[n] for n in ("video", "text")})
    for t in a:
        assert torch.allclose(a[t], b[t], atol=1e-5), t


def test_xattn_frames_with_every_modality_absent_are_finite():
    head = _build("xattn", IN_DIMS, **XATTN)
    x = _inputs()
    present = {n: torch.ones(2, 20, dtype=torch.bool) for n in IN_DIMS}
    for n in IN_DIMS:
        present[n][0, 4:9] = False  # no face and no audio on frames 4..8 of clip 0
        present[n][1] = False  # clip 1: nothing at all
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[0, 15:] = False
    with torch.no_grad():
        out = head(x, mask, present)
    for t in out:
        assert torch.isfinite(out[t]).all()
    fused = head.fuse(x, mask, head.check_present(present, mask))
    assert torch.equal(fused[0, 4:9], torch.zeros(5, 16)) and torch.equal(fused[1], torch.zeros(20, 16))


def test_xattn_learns_under_modality_dropout_without_nan():
    """Batches whose modalities :func:`~afwpipe.clips.drop_modalities` dropped (x zero, present False): finite
    loss and gradients (the train_epoch path is in tests/test_train.py)."""
    import numpy as np

    from afwpipe.clips import drop_modalities
    from afwpipe.losses import mtl_loss

    head = create_head("xattn", IN_DIMS, ["va"], **XATTN)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    for step in range(3):
        x = _inputs(b=8, seed=step)
        batch = {"x": x, "present": {n: torch.ones(8, 20, dtype=torch.bool) for n in IN_DIMS},
                 "mask": torch.ones(8, 20, dtype=torch.bool)}
        dropped = drop_modalities(batch, 0.5, rng)
        assert dropped.any()
        out = head(batch["x"], batch["mask"], batch["present"])
        loss, _ = mtl_loss(out, {"va": torch.rand(8, 20, 2) - 0.5})
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)
        opt.step()


# -- mamba ----------------------------------------------------------------------------------------------------

def test_mamba_uses_transformers_mamba():
    from transformers import MambaModel

    head = _build("mamba", d_model=8, n_layers=1, state_size=4)
    assert isinstance(head.temporal.forward_scan, MambaModel)
    assert head.temporal.forward_scan.config.hidden_size == 8


def test_reverse_real_frames_matches_flip_on_prefix_masks():
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[0, :6], mask[1, :4], mask[2, :1] = True, True, True
    idx = reverse_real_frames(mask)
    x = torch.arange(18).view(3, 6)
    got = x.gather(1, idx)
    assert got[0].tolist() == x[0].flip(0).tolist()
    assert got[1].tolist() == x[1, :4].flip(0).tolist() + x[1, 4:].tolist()
    assert got[2].tolist() == x[2].tolist()
    assert torch.equal(got.gather(1, idx), x)


# -- stack ----------------------------------------------------------------------------------------------------

def test_stack_composes_registered_blocks():
    head = _build("stack", stack=["msf", "tcn"], d_model=8, mlp_dim=8,
                  blocks={"msf": {"windows": [3], "n_heads": 2}, "tcn": {"causal": True, "dilations": [1]}})
    assert head.stack == ("msf", "tcn")
    assert type(head.fusion).__name__ == "MSFFusion" and type(head.temporal[0]).__name__ == "TemporalConvNet"
    assert head.temporal[0].blocks[0].left == 2  # causal: left padding (kernel 3 − 1)·dilation 1
    assert _build("stack", stack=["tcn", "mamba"], d_model=8, blocks={"mamba": {"n_layers": 1}}).stack == \
        ("concat", "tcn", "mamba")


def test_stack_errors_name_the_blocks():
    with pytest.raises(AfwpipeError, match="lstm is not a temporal block.*concat, gated, msf, xattn.*mamba, tcn, transformer"):
        create_head("stack", IN_DIMS, ["au"], stack=["concat", "lstm"])
    with pytest.raises(AfwpipeError, match="blocks has options for mamba, not in the stack"):
        create_head("stack", IN_DIMS, ["au"], stack=["tcn"], blocks={"mamba": {}})
    with pytest.raises(AfwpipeError, match="bad options.*'tcn'"):
        create_head("stack", IN_DIMS, ["au"], stack=["tcn"], blocks={"tcn": {"width": 3}})
    with pytest.raises(AfwpipeError, match="msf is not a temporal block"):
        create_head("stack", IN_DIMS, ["au"], stack=["tcn", "msf"])


def test_fusion_option_stacks_msf_before_a_tcn():
    """USTC ABAW8's msf → TCN → MLP as ``tcn`` with ``fusion: msf``."""
    head = _build("tcn", channels=8, mlp_dim=8, fusion="msf", fusion_dim=8, fusion_kwargs={"windows": [3], "n_heads": 2})
    assert head.proj.in_channels == 8 and type(head.fusion).__name__ == "MSFFusion"
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 12:] = False
    x = _inputs()
    x2 = {n: v.clone() for n, v in x.items()}
    for v in x2.values():
        v[~mask] = 50.0
    with torch.no_grad():
        a, b = head(x, mask), head(x2, mask)
    assert torch.allclose(a["au"][mask], b["au"][mask], atol=1e-5)


def test_cross_attention_matches_torch_multihead_attention_over_the_present_keys():
    """Reference: ``torch.nn.MultiheadAttention`` with the same weights and ``key_padding_mask`` = absent
    frames; a clip row without any present key gives 0 (where the reference gives NaN)."""
    from afwpipe.heads.xattn import CrossAttention

    torch.manual_seed(0)
    att = CrossAttention(8, 2, 0.0).eval()
    ref = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([att.q.weight, att.kv.weight]))
        ref.in_proj_bias.copy_(torch.cat([att.q.bias, att.kv.bias]))
        ref.out_proj.weight.copy_(att.out.weight)
        ref.out_proj.bias.copy_(att.out.bias)
    hq, hk = torch.randn(3, 7, 8), torch.randn(3, 7, 8)
    key_ok = torch.tensor([[1, 1, 0, 1, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0] * 7], dtype=torch.bool)
    with torch.no_grad():
        got = att(hq, hk, key_ok)
        want, _ = ref(hq[:2], hk[:2], hk[:2], key_padding_mask=~key_ok[:2])
    assert torch.allclose(got[:2], want, atol=1e-5)
    assert torch.equal(got[2], torch.zeros(7, 8))

