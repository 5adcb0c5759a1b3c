"""taco.rl.reinforce against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from taco.rl import reinforce as rf

NAN = math.nan


def _lp(p_keep: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.tensor(p_keep, dtype=torch.float64)
    return p.log(), (1 - p).log()


def test_token_log_probs_match_softmax_and_keep_index() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax = [0.25, 0.75]
    keep, drop = rf.token_log_probs(logits, keep_index=1)
    assert keep.item() == pytest.approx(math.log(0.75))
    assert drop.item() == pytest.approx(math.log(0.25))
    keep0, drop0 = rf.token_log_probs(logits, keep_index=0)
    assert keep0.item() == pytest.approx(math.log(0.25))
    assert drop0.item() == pytest.approx(math.log(0.75))


def test_sequence_log_prob_masks_padding_and_sums() -> None:
    lk, ld = _lp([[0.8, 0.6, 0.5]])  # third position is padding / special
    actions = torch.tensor([[[1, 0, 1], [0, 0, 0]]])  # k = 2
    mask = torch.tensor([[True, True, False]])
    lp = rf.sequence_log_prob(lk, ld, actions, mask)
    assert lp.shape == (1, 2)
    assert lp[0, 0].item() == pytest.approx(math.log(0.8) + math.log(0.4))
    assert lp[0, 1].item() == pytest.approx(math.log(0.2) + math.log(0.4))
    mean = rf.sequence_log_prob(lk, ld, actions, mask, reduction="mean")
    assert mean[0, 0].item() == pytest.approx((math.log(0.8) + math.log(0.4)) / 2)
    with pytest.raises(ValueError, match="reduction"):
        rf.sequence_log_prob(lk, ld, actions, mask, reduction="max")  # type: ignore[arg-type]


def test_sequence_entropy_is_mean_over_action_positions() -> None:
    lk, ld = _lp([[0.5, 0.9, 0.1], [0.5, 0.5, 0.5]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    h = rf.sequence_entropy(lk, ld, mask)
    h09 = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert h[0].item() == pytest.approx((math.log(2) + h09) / 2)
    assert h[1].item() == 0.0  # no actions → 0, not NaN


def test_word_log_probs_are_log_of_mean_token_probability() -> None:
    p = torch.tensor([0.9, 0.5, 0.2, 0.7], dtype=torch.float64, requires_grad=True)
    token_word = torch.tensor([0, 0, 1, 2])
    wk, wd = rf.word_log_probs(p.log(), (1 - p).log(), token_word, 3)
    assert wk.tolist() == pytest.approx([math.log(0.7), math.log(0.2), math.log(0.7)])
    assert wd.tolist() == pytest.approx([math.log(0.3), math.log(0.8), math.log(0.3)])
    wk[0].backward()  # d/dp0 log((p0+p1)/2) = 1/(p0+p1)
    assert p.grad is not None
    assert p.grad[0].item() == pytest.approx(1 / 1.4)
    assert p.grad[2].item() == 0.0


def test_rloo_baseline_and_unscorable_samples() -> None:
    r = rf.rewards_tensor([[1.0, 2.0, 3.0], [0.5, None, 1.5], [None, 4.0, None]])
    b = rf.baseline_values(r, "loo")
    assert b[0].tolist() == pytest.approx([2.5, 2.0, 1.5])
    assert b[1, 0].item() == pytest.approx(1.5) and b[1, 2].item() == pytest.approx(0.5)
    adv = rf.advantages(r, "loo")
    assert adv[0].tolist() == pytest.approx([-1.5, 0.0, 1.5])
    assert adv[1].tolist() == pytest.approx([-1.0, 0.0, 1.0])  # None → exactly 0
    assert adv[2].tolist() == [0.0, 0.0, 0.0]  # lone scorable sample: nothing to compare


def test_k1_uses_leave_one_out_batch_mean() -> None:
    r = rf.rewards_tensor([[1.0], [2.0], [None], [6.0]])
    adv = rf.advantages(r, "loo")
    assert adv[:, 0].tolist() == pytest.approx([1 - 4.0, 2 - 3.5, 0.0, 6 - 1.5])


def test_no_baseline_is_the_paper_mode() -> None:
    r = rf.rewards_tensor([[0.3], [None], [-0.1]])
    adv = rf.advantages(r, "none")
    assert adv[:, 0].tolist() == pytest.approx([0.3, 0.0, -0.1])
    with pytest.raises(ValueError, match="baseline"):
        rf.advantages(r, "mean")  # type: ignore[arg-type]


def test_greedy_baseline_is_self_critical_with_loo_fallback() -> None:
    """``greedy``: each prompt's deployed compression's reward is the baseline (SCST); a
    prompt whose greedy reward is unscorable falls back to leave-one-out."""
    r = rf.rewards_tensor([[0.5, 0.7, None], [0.2, 0.4, 0.6]])
    greedy = rf.rewards_tensor([[0.6, None]])[0]
    adv = rf.advantages(r, "greedy", greedy=greedy)
    assert adv[0].tolist() == pytest.approx([-0.1, 0.1, 0.0])
    assert adv[1].tolist() == pytest.approx([0.2 - 0.5, 0.0, 0.6 - 0.3])
    with pytest.raises(ValueError, match="greedy reward per prompt"):
        rf.advantages(r, "greedy")


def test_normalisation_scales_by_std_without_recentring() -> None:
    r = rf.rewards_tensor([[0.0, 2.0], [None, 1.0]])
    adv = rf.advantages(r, "none", normalize=True)
    # scorable advantages 0, 2, 1 → population std sqrt(2/3)
    std = math.sqrt(2 / 3)
    assert adv.flatten().tolist() == pytest.approx([0.0, 2 / std, 0.0, 1 / std], rel=1e-6)


def test_policy_loss_value_and_gradient() -> None:
    logp = torch.tensor([[-1.0, -2.0], [-3.0, -4.0]], requires_grad=True)
    adv = torch.tensor([[1.0, -1.0], [0.5, 0.0]])
    valid = torch.tensor([[True, True], [True, False]])
    ent = torch.tensor([0.6, 0.2])
    loss, parts = rf.policy_loss(logp, adv, ent, entropy_coef=0.1, valid=valid)
    pg = -(1.0 * -1.0 + -1.0 * -2.0 + 0.5 * -3.0) / 3
    assert loss.item() == pytest.approx(pg - 0.1 * 0.4)
    assert parts["loss/policy"] == pytest.approx(pg)
    assert parts["policy/entropy"] == pytest.approx(0.4)
    loss.backward()
    assert logp.grad is not None
    assert logp.grad.flatten().tolist() == pytest.approx([-1 / 3, 1 / 3, -0.5 / 3, 0.0])


def test_entropy_bonus_gradient_pushes_towards_half() -> None:
    logits = torch.tensor([[[0.0, 2.0]]], requires_grad=True)  # p_keep ≈ 0.88
    lk, ld = rf.token_log_probs(logits)
    ent = rf.sequence_entropy(lk, ld, torch.ones(1, 1, dtype=torch.bool))
    loss, _ = rf.policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), ent, entropy_coef=1.0)
    loss.backward()
    assert logits.grad is not None
    assert logits.grad[0, 0, 1].item() > 0  # gradient descent lowers the keep logit


def test_plackett_luce_log_prob_by_hand() -> None:
    s = torch.tensor([math.log(1.0), math.log(2.0), math.log(3.0), 50.0], requires_grad=True)
    mask = torch.tensor([True, True, True, False])  # item 3 is not an action
    lp = rf.plackett_luce_log_prob(s, torch.tensor([2, 0]), mask)
    assert lp.item() == pytest.approx(math.log(3 / 6) + math.log(1 / 3))
    lp.backward()
    assert s.grad is not None and s.grad[3].item() == 0.0
    # all orders of 2 out of 3 items: probabilities sum to 1
    total = sum(
        math.exp(rf.plackett_luce_log_prob(s.detach(), torch.tensor([a, b]), mask).item())
        for a in range(3)
        for b in range(3)
        if a != b
    )
    assert total == pytest.approx(1.0)
    assert rf.plackett_luce_log_prob(s, torch.tensor([], dtype=torch.long), mask).item() == 0.0


def test_plackett_luce_log_prob_is_stable_for_a_confident_policy() -> None:
    """300 items, logits of a sure policy (|s| up to ~25), half of them picked: value and
    gradient match a float64 pick-by-pick logsumexp reference (the subtract-the-picked-mass
    form was off by thousands here, in float32)."""
    g = torch.Generator().manual_seed(0)
    n = 300
    s = torch.randn(n, generator=g) * 8
    noisy = s - torch.log(-torch.log(torch.rand(n, generator=g)))
    order = torch.argsort(-noisy)[: n // 2]
    mask = torch.ones(n, dtype=torch.bool)
    mask[7] = False  # a forced word: never an action
    order = order[order != 7]
    got_s = s.clone().requires_grad_(True)
    got = rf.plackett_luce_log_prob(got_s, order, mask)
    got.backward()
    ref_s = s.double().clone().requires_grad_(True)
    left = mask.clone()
    ref = ref_s.new_zeros(())
    for o in order.tolist():
        ref = ref + ref_s[o] - torch.logsumexp(ref_s[left], 0)
        left = left.clone()
        left[o] = False
    ref.backward()
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)
    assert got_s.grad is not None and ref_s.grad is not None
    assert torch.allclose(got_s.grad.double(), ref_s.grad, atol=1e-4)
    assert got_s.grad[7].item() == 0.0


def test_plackett_luce_log_probs_batches_rows_of_any_length() -> None:
    """Rows of different item and pick counts (padding in both) give the row-by-row values
    and gradients; an empty order gives 0."""
    g = torch.Generator().manual_seed(3)
    rows = [(9, [4, 0, 7]), (5, [2]), (7, []), (9, [8, 1, 2, 3, 5, 6])]
    width = max(n for n, _ in rows)
    scores = torch.randn(len(rows), width, generator=g) * 5
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for r, (n, _) in enumerate(rows):
        mask[r, :n] = True
    mask[0, 2] = False  # not an action (forced)
    orders = torch.full((len(rows), 6), 3)  # padding: any index, it must be ignored
    for r, (_, o) in enumerate(rows):
        orders[r, : len(o)] = torch.tensor(o, dtype=torch.long)
    n_picked = torch.tensor([len(o) for _, o in rows])
    got_s = scores.clone().requires_grad_(True)
    got = rf.plackett_luce_log_probs(got_s, orders, n_picked, mask)
    got.sum().backward()
    for r, (_, o) in enumerate(rows):
        one_s = scores[r].clone().requires_grad_(True)
        one = rf.plackett_luce_log_prob(one_s, torch.tensor(o, dtype=torch.long), mask[r])
        one.backward()
        assert got[r].item() == pytest.approx(one.item(), abs=1e-5)
        assert torch.allclose(got_s.grad[r], one_s.grad, atol=1e-5)
        # and the pick-by-pick definition
        left, ref = mask[r].clone(), 0.0
        for i in o:
            ref += scores[r, i].item() - torch.logsumexp(scores[r][left], 0).item()
            left[i] = False
        assert got[r].item() == pytest.approx(ref, abs=1e-4)
    assert got[2].item() == 0.0
