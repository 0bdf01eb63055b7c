import itertools

import pytest
import torch

from afwpipe.errors import AfwpipeError
from afwpipe.heads import create_head, list_heads, register_head
from afwpipe.heads.msf import window_attention_mask

IN_DIMS = {"video": 6, "audio": 4}
SMALL = {
    "tmf": dict(d_model=16, n_layers=2, n_heads=2),
    "tcn": dict(channels=16, mlp_dim=32),
    "msf": dict(d_model=16, n_heads=2, windows=(3, 7)),
    "xattn": dict(d_model=16, n_heads=2, n_layers=1),
    "mamba": dict(d_model=16, n_layers=1, state_size=4),
    "stack": dict(stack=["msf", "tcn", "mamba"], d_model=16, mlp_dim=16,
                  blocks={"msf": {"windows": [3], "n_heads": 2}, "tcn": {"dilations": [1, 2]},
                          "mamba": {"n_layers": 1, "state_size": 4}}),
}
HEADS = list(SMALL)
TASK_SETS = [list(c) for r in (1, 2, 3) for c in itertools.combinations(("au", "expr", "va"), r)]


def _inputs(b=2, k=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(b, k, d, generator=g) for n, d in IN_DIMS.items()}


def test_registry_lists_every_head():
    assert set(list_heads()) >= set(HEADS)
    assert list_heads("t*") == ["tcn", "tmf"]


def test_unknown_head_error_lists_registry():
    with pytest.raises(AfwpipeError, match="unknown head 'nope'.*mamba, msf, stack, tcn, tmf, xattn"):
        create_head("nope", IN_DIMS, ["au"])


def test_duplicate_registration_is_refused():
    with pytest.raises(AfwpipeError, match="already registered"):
        register_head("tmf")(lambda *a, **k: None)


def test_bad_tasks_and_inputs_are_refused():
    with pytest.raises(AfwpipeError, match="tasks"):
        create_head("tcn", IN_DIMS, ["pose"])
    head = create_head("tcn", IN_DIMS, ["au"], **SMALL["tcn"])
    with pytest.raises(AfwpipeError, match="expects inputs"):
        head({"video": torch.zeros(1, 5, 6)})
    with pytest.raises(AfwpipeError, match="expected shape"):
        head({"video": torch.zeros(1, 5, 6), "audio": torch.zeros(1, 5, 3)})


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize("tasks", TASK_SETS, ids=["-".join(t) for t in TASK_SETS])
def test_output_shapes_per_task_combination(name, tasks):
    head = create_head(name, IN_DIMS, tasks, **SMALL[name]).eval()
    out = head(_inputs(b=3, k=11))
    assert sorted(out) == sorted(tasks)
    dims = {"au": 12, "expr": 8, "va": 2}
    for t in tasks:
        assert out[t].shape == (3, 11, dims[t]) and out[t].dtype == torch.float32
    if "va" in out:
        assert out["va"].abs().max() <= 1.0


@pytest.mark.parametrize("name", HEADS)
def test_padded_frames_do_not_change_real_frames(name):
    torch.manual_seed(0)
    head = create_head(name, IN_DIMS, ["au", "expr", "va"], **SMALL[name]).eval()
    x = _inputs()
    mask = torch.ones(2, 24, dtype=torch.bool)
    mask[0, 17:] = False
    mask[1, :3] = False
    x2 = {n: v.clone() for n, v in x.items()}
    for v in x2.values():
        v[~mask] = torch.randn(int((~mask).sum()), v.shape[-1]) * 100
    with torch.no_grad():
        a, b = head(x, mask), head(x2, mask)
    for t in a:
        assert torch.allclose(a[t][mask], b[t][mask], atol=1e-5)


@pytest.mark.parametrize("name, extra", [*((n, {}) for n in HEADS), ("mamba", {"bidirectional": True}),
                                         ("tcn", {"causal": True}), ("tmf", {"fusion": "gated", "experts": 3})],
                         ids=[*HEADS, "mamba-bidirectional", "tcn-causal", "tmf-gated-experts"])
def test_a_padded_clip_equals_the_clip_without_its_padding(name, extra):
    """Trailing padding (the clips' last partial window) gives the real frames the outputs of the shorter,
    unpadded clip."""
    torch.manual_seed(0)
    head = create_head(name, IN_DIMS, ["au", "expr", "va"], **SMALL[name], **extra).eval()
    x = _inputs()
    mask = torch.ones(2, 24, dtype=torch.bool)
    mask[0, 15:] = False
    with torch.no_grad():
        padded = head(x, mask)
        short = head({n: v[:1, :15] for n, v in x.items()})
    for t in padded:
        assert torch.allclose(padded[t][0, :15], short[t][0], atol=1e-5), t


@pytest.mark.parametrize("name", HEADS)
def test_clip_without_real_frames_gives_finite_outputs(name):
    head = create_head(name, IN_DIMS, ["va"], **SMALL[name]).eval()
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[1] = True
    out = head(_inputs(k=9), mask)["va"]
    assert torch.isfinite(out).all()


def test_window_attention_mask_is_band_limited_and_hides_padding():
    mask = torch.tensor([[True, True, True, True, False]])
    m = window_attention_mask(mask, 3)[0, 0]
    assert m[0].tolist() == [True, True, False, False, False]
    assert m[3].tolist() == [False, False, True, True, False]  # padded key 4 hidden
    assert m[4].tolist() == [False, False, False, True, True]  # padded query: real neighbours and itself
    assert not window_attention_mask(torch.zeros(1, 3, dtype=torch.bool), 3)[0, 0].logical_xor(torch.eye(3, dtype=torch.bool)).any()


def test_msf_modality_weights_are_softmax_normalised():
    head = create_head("msf", IN_DIMS, ["au"], **SMALL["msf"])
    alpha, beta = head.modality_weights()
    assert alpha.shape == (2,) and torch.allclose(alpha.sum(), torch.tensor(1.0))
    assert torch.allclose(beta, torch.tensor([0.5, 0.5]))


def test_train_help_and_params_name_every_head():
    """``afwpipe train --help``, the README and params.yaml's comment name every registered head, and
    ``train.head`` accepts each (what ``dvc exp run -S train.head=<name>`` sets)."""
    from pathlib import Path

    from click.testing import CliRunner

    from afwpipe.cli import main
    from afwpipe.train import TrainConfig

    repo = Path(__file__).resolve().parents[1]
    res = CliRunner().invoke(main, ["train", "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    readme = (repo / "README.md").read_text()
    params = next(line for line in (repo / "params.yaml").read_text().splitlines() if line.strip().startswith("head:"))
    for name in list_heads():
        assert f" {name} " in " ".join(res.output.split()).replace("(", " ").replace(",", " "), name
        assert f"`{name}`" in readme and f" {name} " in params.replace("|", " ") + " ", name
        assert TrainConfig.from_params({"head": name}).head == name
