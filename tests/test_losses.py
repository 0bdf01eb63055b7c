import numpy as np
import pytest
import torch
import torch.nn.functional as F

from afwpipe.losses import (au_bce_loss, au_pos_weights, ccc_torch, expr_ce_loss, expr_class_weights, mtl_loss,
                            va_ccc_loss)


def _ccc_np(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    return 2 * np.mean((x - x.mean()) * (y - y.mean())) / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def _outputs(b=2, k=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"au": torch.randn(b, k, 12, generator=g, requires_grad=True),
            "expr": torch.randn(b, k, 8, generator=g, requires_grad=True),
            "va": torch.randn(b, k, 2, generator=g).tanh().requires_grad_()}


def _targets(b=2, k=5, seed=0):
    rng = np.random.default_rng(seed)
    return {"au": torch.as_tensor(rng.integers(0, 2, (b, k, 12))),
            "expr": torch.as_tensor(rng.integers(0, 8, (b, k))),
            "va": torch.as_tensor(rng.uniform(-1, 1, (b, k, 2)), dtype=torch.float32)}


def _invalidate(t):
    return {"au": torch.full_like(t["au"], -1), "expr": torch.full_like(t["expr"], -1),
            "va": torch.full_like(t["va"], -5.0)}


def test_all_invalid_batch_gives_zero_loss_and_exactly_zero_gradient():
    out = _outputs()
    total, parts = mtl_loss(out, _invalidate(_targets()),
                            au_pos_weight=np.full(12, 3.0, np.float32), expr_class_weight=np.ones(8, np.float32))
    assert total.item() == 0.0 and total.grad_fn is not None
    assert all(p.item() == 0.0 for p in parts.values())
    total.backward()
    for v in out.values():
        assert v.grad is not None and torch.equal(v.grad, torch.zeros_like(v.grad))


def test_all_padded_batch_gives_zero_gradient():
    out = _outputs()
    total, _ = mtl_loss(out, _targets(), mask=torch.zeros(2, 5, dtype=torch.bool))
    total.backward()
    assert total.item() == 0.0
    assert all(torch.equal(v.grad, torch.zeros_like(v.grad)) for v in out.values())


def test_invalid_and_padded_frames_do_not_contribute():
    out, tgt = _outputs(), _targets()
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    tgt["au"][0, 0] = -1
    tgt["expr"][0, 1] = -1
    tgt["va"][0, 2, 0] = -5.0
    total, _ = mtl_loss(out, tgt, mask)
    total.backward()
    assert torch.equal(out["au"].grad[0, 0], torch.zeros(12))
    assert torch.equal(out["expr"].grad[0, 1], torch.zeros(8))
    assert out["va"].grad[0, 2, 0] == 0.0 and out["va"].grad[0, 2, 1] != 0.0
    for v in out.values():
        assert torch.equal(v.grad[1, 3:], torch.zeros_like(v.grad[1, 3:]))


def test_au_bce_matches_torch_on_valid_entries():
    out, tgt = _outputs(), _targets()
    tgt["au"][1, 2] = -1
    pw = torch.linspace(0.5, 3, 12)
    keep = tgt["au"][..., 0] != -1
    ref = F.binary_cross_entropy_with_logits(out["au"][keep], tgt["au"][keep].float(), pos_weight=pw)
    assert au_bce_loss(out["au"], tgt["au"], pw).item() == pytest.approx(ref.item(), rel=1e-6)


def test_expr_ce_matches_torch_weighted_mean():
    out, tgt = _outputs(), _targets()
    tgt["expr"][0, :2] = -1
    w = torch.linspace(0.2, 2, 8)
    ref = F.cross_entropy(out["expr"].reshape(-1, 8), tgt["expr"].reshape(-1), weight=w, ignore_index=-1)
    assert expr_ce_loss(out["expr"], tgt["expr"], w).item() == pytest.approx(ref.item(), rel=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_ccc_loss_matches_numpy_formula(seed):
    out, tgt = _outputs(b=4, k=20, seed=seed), _targets(b=4, k=20, seed=seed)
    tgt["va"][0, :3, 1] = -5.0
    loss = va_ccc_loss(out["va"], tgt["va"]).item()
    p, t = out["va"].detach().reshape(-1, 2).numpy(), tgt["va"].reshape(-1, 2).numpy()
    keep = t[:, 1] != -5
    expected = 2 - _ccc_np(p[:, 0], t[:, 0]) - _ccc_np(p[keep, 1], t[keep, 1])
    assert loss == pytest.approx(expected, abs=1e-5)


def test_ccc_torch_gradient_is_finite_for_constant_inputs():
    x = torch.zeros(6, requires_grad=True)
    c = ccc_torch(x, torch.zeros(6))
    c.backward()
    assert c.item() == 0.0 and torch.isfinite(x.grad).all()


def test_au_pos_weights_are_negatives_over_positives():
    labels = np.zeros((10, 12), int)
    labels[:2, 0] = 1  # 2 pos, 8 neg -> 4
    labels[:5, 1] = 1  # 5/5 -> 1
    labels[:, 2] = 1  # no negative -> 1
    labels[:, 3] = 0  # no positive -> 1
    labels[:1, 4] = 1
    labels[5:, :] = -1  # invalid frames ignored: AU0 2 pos/3 neg, AU1 5 pos/0 neg, AU4 1 pos/4 neg
    w = au_pos_weights(labels)
    assert w.dtype == np.float32
    np.testing.assert_allclose(w[:5], [1.5, 1.0, 1.0, 1.0, 4.0])


def test_expr_class_weights_inverse_frequency():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, -1, -1])
    w = expr_class_weights(labels)
    # N=8 valid, 3 classes present: w_c = 8 / (3 * count_c); absent classes get the largest present weight
    np.testing.assert_allclose(w, [8 / 12, 8 / 6, 8 / 6] + [8 / 6] * 5, rtol=1e-6)
    assert np.all(expr_class_weights(np.full(4, -1)) == 1.0)


def test_mtl_weights_tasks_and_rejects_no_shared_task():
    out, tgt = _outputs(), _targets()
    total, parts = mtl_loss(out, tgt, task_weights={"au": 2.0, "va": 0.5})
    assert total.item() == pytest.approx(2 * parts["au"].item() + parts["expr"].item() + 0.5 * parts["va"].item())
    with pytest.raises(ValueError, match="no task"):
        mtl_loss({"au": out["au"]}, {"va": tgt["va"]})


# -- focal loss and logit adjustment (issue 14) ------------------------------------------------------------
def test_focal_gamma_zero_is_exactly_the_weighted_bce_and_ce():
    out, tgt = _outputs(seed=3), _targets(seed=3)
    pw, cw = np.linspace(0.5, 4, 12).astype(np.float32), np.linspace(0.3, 3, 8).astype(np.float32)
    assert torch.equal(au_bce_loss(out["au"], tgt["au"], pw, gamma=0.0), au_bce_loss(out["au"], tgt["au"], pw))
    assert torch.equal(expr_ce_loss(out["expr"], tgt["expr"], cw, gamma=0.0), expr_ce_loss(out["expr"], tgt["expr"], cw))
    total0, _ = mtl_loss(out, tgt, au_pos_weight=pw, expr_class_weight=cw, focal_gamma=0.0)
    total, _ = mtl_loss(out, tgt, au_pos_weight=pw, expr_class_weight=cw)
    assert torch.equal(total0, total)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_au_focal_loss_matches_torchvision_sigmoid_focal_loss_with_pos_weight_as_alpha(gamma):
    from torchvision.ops import sigmoid_focal_loss

    out, tgt = _outputs(b=3, k=7, seed=4), _targets(b=3, k=7, seed=4)
    logits, labels = out["au"].detach(), tgt["au"]
    pw = np.linspace(0.5, 4, 12).astype(np.float32)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[2, 4:] = False
    ours = au_bce_loss(logits, labels, pw, mask, gamma=gamma)
    # per AU: BCE with pos_weight w = (1 + w) · torchvision focal loss with alpha = w / (1 + w)
    ref = torch.stack([(1 + w) * sigmoid_focal_loss(logits[..., j], labels[..., j].float(), alpha=w / (1 + w),
                                                    gamma=gamma, reduction="none")
                       for j, w in enumerate(pw.tolist())], dim=-1)
    assert ours.item() == pytest.approx(ref[mask].mean().item(), rel=1e-5)
    assert ours.item() < au_bce_loss(logits, labels, pw, mask).item()  # focal down-weights easy entries


def test_expr_focal_loss_hand_worked_value():
    # two frames, 3 classes: p(true) = softmax picks; loss = Σ w_y (1 − p_y)^γ (−log p_y) / Σ w_y
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 2])
    w = np.array([1.0, 1.0, 3.0], np.float32)
    p0 = np.exp(2) / (np.exp(2) + 2)  # 0.78699
    p1 = 1 / (np.exp(1) + 2)          # 0.21194
    expected = (1 * (1 - p0) ** 2 * -np.log(p0) + 3 * (1 - p1) ** 2 * -np.log(p1)) / 4
    got = expr_ce_loss(logits, labels, w, gamma=2.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # by hand: (0.0453·0.2395 + 3·0.6210·1.5515) / 4 = (0.01087 + 2.89057) / 4
    assert expected == pytest.approx(0.7254, abs=1e-4)


def test_logit_adjusted_ce_hand_worked_value_and_prior():
    from afwpipe.losses import expr_log_prior

    labels_train = np.array([0] * 6 + [1] * 3 + [2] * 1 + [-1] * 5)
    log_prior = expr_log_prior(labels_train, n_classes=4)  # class 3 absent: counts as one frame
    np.testing.assert_allclose(log_prior, np.log([6 / 11, 3 / 11, 1 / 11, 1 / 11]), rtol=1e-6)
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    tau = 1.0
    got = expr_ce_loss(logits, torch.tensor([2]), logit_offset=tau * log_prior)
    # adjusted logits = log π: softmax = π (prior sums to 1), so the loss is −log π_2 = log 11
    assert got.item() == pytest.approx(np.log(11), rel=1e-6)
    assert expr_ce_loss(logits, torch.tensor([2]), logit_offset=0.5 * log_prior).item() == pytest.approx(
        -np.log(np.sqrt(1 / 11) / np.sqrt([6 / 11, 3 / 11, 1 / 11, 1 / 11]).sum()), rel=1e-6)


def test_logit_adjustment_moves_argmax_predictions_toward_rare_classes():
    # an imbalanced toy problem: 1-D feature, class 0 (90 %) at −0.5, class 1 (10 %) at +0.5, overlapping
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.1).astype(np.int64)
    x = torch.as_tensor(rng.normal(y - 0.5, 1.0), dtype=torch.float32)[:, None]
    log_prior = np.log(np.bincount(y) / len(y)).astype(np.float32)

    def fit(offset):
        torch.manual_seed(0)
        lin = torch.nn.Linear(1, 2)
        opt = torch.optim.LBFGS(lin.parameters(), max_iter=200)

        def closure():
            opt.zero_grad()
            loss = expr_ce_loss(lin(x), torch.as_tensor(y), logit_offset=offset)
            loss.backward()
            return loss
        opt.step(closure)
        return lin(x).argmax(1).numpy()  # predictions use the raw logits

    plain, adjusted = fit(None), fit(1.0 * log_prior)
    rare_plain, rare_adj = (plain == 1).sum(), (adjusted == 1).sum()
    assert rare_adj > rare_plain + 100, (rare_plain, rare_adj)
    # balanced error: the adjusted model's per-class recall is closer to balanced (Menon et al. 2021)
    from sklearn.metrics import balanced_accuracy_score
    assert balanced_accuracy_score(y, adjusted) > balanced_accuracy_score(y, plain) + 0.1
