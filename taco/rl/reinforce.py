"""REINFORCE math as pure tensor functions: masked log-probs and entropy, baselines, loss
(docs/algorithm.md §2; Plackett–Luce log-probs of budget samples: §4).

Shapes: ``B`` prompts, ``k`` samples per prompt, ``T`` action positions (padded). The policy
gives, per prompt and position, ``logp_keep`` and ``logp_drop`` (log-probabilities of the two
actions, shape ``(B, T)``); actions are ``(B, k, T)`` in {0, 1} (1 = keep); ``mask`` is
``(B, T)`` and True only where there is a real action (not padding, special tokens, the
question, or forced words). Rewards are ``(B, k)`` floats with NaN for unscorable samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

Baseline = Literal["loo", "none", "greedy"]
Reduction = Literal["sum", "mean"]


def token_log_probs(logits: torch.Tensor, keep_index: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logp_keep, logp_drop)`` from 2-way logits ``(..., 2)`` (float32 for stability)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp[..., keep_index], logp[..., 1 - keep_index]


def word_log_probs(
    logp_keep: torch.Tensor, logp_drop: torch.Tensor, token_word: torch.Tensor, n_words: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-word log-probs for word-level actions: p(keep word) = mean of its sub-token
    p(keep) — the score the inference path ranks words by. ``logp_*`` are 1-D over one
    prompt's tokens, ``token_word`` maps each token to its word index (0..n_words-1).

    Computed in log space: log mean p = logsumexp(log p) - log n.
    """
    n_tok = torch.zeros(n_words, dtype=logp_keep.dtype, device=logp_keep.device)
    n_tok.index_add_(0, token_word, torch.ones_like(logp_keep))
    out = []
    for lp in (logp_keep, logp_drop):
        # segment logsumexp: subtract each word's max for stability.
        mx = torch.full((n_words,), -math.inf, dtype=lp.dtype, device=lp.device)
        mx = mx.scatter_reduce(0, token_word, lp.detach(), reduce="amax", include_self=True)
        s = torch.zeros(n_words, dtype=lp.dtype, device=lp.device)
        s = s.index_add(0, token_word, torch.exp(lp - mx[token_word]))
        out.append(torch.log(s) + mx - torch.log(n_tok))
    return out[0], out[1]


def sequence_log_prob(
    logp_keep: torch.Tensor,
    logp_drop: torch.Tensor,
    actions: torch.Tensor,
    mask: torch.Tensor,
    reduction: Reduction = "sum",
) -> torch.Tensor:
    """log π(a) per sample ``(B, k)``: the sum (or mean) over action positions of the
    chosen action's log-prob. Masked positions contribute nothing."""
    lp = torch.where(actions.bool(), logp_keep.unsqueeze(1), logp_drop.unsqueeze(1))
    m = mask.unsqueeze(1).to(lp.dtype)
    total = (lp * m).sum(-1)
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / m.sum(-1).clamp(min=1.0)
    raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")


def sequence_entropy(
    logp_keep: torch.Tensor, logp_drop: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean Bernoulli entropy (nats) per action position, per prompt ``(B,)``; 0 when a
    prompt has no action positions."""
    h = -(logp_keep.exp() * logp_keep + logp_drop.exp() * logp_drop)
    m = mask.to(h.dtype)
    return (h * m).sum(-1) / m.sum(-1).clamp(min=1.0)


def rewards_tensor(rewards: Sequence[Sequence[float | None]]) -> torch.Tensor:
    """``(B, k)`` float64 tensor from nested lists; ``None`` (unscorable) becomes NaN."""
    return torch.tensor(
        [[math.nan if r is None else float(r) for r in row] for row in rewards],
        dtype=torch.float64,
    )


def baseline_values(
    rewards: torch.Tensor, kind: Baseline = "loo", greedy: torch.Tensor | None = None
) -> torch.Tensor:
    """Baseline per sample ``(B, k)``; NaN rewards are unscorable and ignored.

    - ``loo`` with k > 1: mean of the *other* scorable samples of the same prompt
      (RLOO); a sample that is its prompt's only scorable one gets its own reward (so
      advantage 0: there is nothing to compare it with).
    - ``loo`` with k = 1: the same leave-one-out rule over the whole batch (batch mean of
      the other samples).
    - ``none``: zero (the paper's plain REINFORCE).
    - ``greedy``: the reward of the prompt's deployed (greedy) compression, ``greedy``
      ``(B,)`` (self-critical training, SCST): only samples that beat what inference keeps
      are reinforced. A prompt whose greedy reward is NaN falls back to ``loo``.
    """
    if kind == "none":
        return torch.zeros_like(rewards)
    if kind == "greedy":
        if greedy is None or greedy.shape != rewards.shape[:1]:
            raise ValueError("baseline 'greedy' needs one greedy reward per prompt")
        g = greedy.to(rewards.dtype)[:, None].expand_as(rewards)
        return torch.where(torch.isnan(g), baseline_values(rewards, "loo"), g)
    if kind != "loo":
        raise ValueError(f"baseline must be 'loo', 'none' or 'greedy', got {kind!r}")
    valid = ~torch.isnan(rewards)
    r = torch.where(valid, rewards, torch.zeros_like(rewards))
    if rewards.shape[1] == 1:
        total, count = r.sum(), valid.sum()
        others_sum = total - r
        others_n = count - valid.to(count.dtype)
    else:
        others_sum = r.sum(1, keepdim=True) - r
        others_n = valid.sum(1, keepdim=True) - valid.to(torch.long)
    return torch.where(others_n > 0, others_sum / others_n.clamp(min=1), r)


def advantages(
    rewards: torch.Tensor,
    baseline: Baseline = "loo",
    normalize: bool = False,
    eps: float = 1e-8,
    greedy: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reward minus baseline ``(B, k)``; unscorable (NaN) samples get exactly 0.

    ``normalize`` divides by the standard deviation of the scorable advantages (no
    re-centring, so the baseline's zero stays zero) when there are at least two.
    """
    valid = ~torch.isnan(rewards)
    adv = torch.where(valid, rewards - baseline_values(rewards, baseline, greedy), 0.0)
    if normalize and int(valid.sum()) > 1:
        std = adv[valid].std(unbiased=False)
        adv = adv / (std + eps)
    return adv


def policy_loss(
    log_prob: torch.Tensor,
    advantage: torch.Tensor,
    entropy: torch.Tensor,
    entropy_coef: float = 0.01,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``-mean(A · log π(a)) - entropy_coef · mean(H)``.

    The policy-gradient mean is over scorable samples (``valid``; all when None), the
    entropy mean over prompts. Advantages are constants (detached). Returns the loss and
    its parts as floats for logging.
    """
    adv = advantage.detach().to(log_prob.dtype)
    if valid is None:
        valid = torch.ones_like(adv, dtype=torch.bool)
    n = valid.sum().clamp(min=1).to(log_prob.dtype)
    pg = -(adv * log_prob * valid.to(log_prob.dtype)).sum() / n
    ent = entropy.mean() if entropy.numel() else entropy.new_zeros(())
    loss = pg - entropy_coef * ent
    return loss, {"loss/policy": float(pg.detach()), "policy/entropy": float(ent.detach())}


_FAR = -1.0e4  # a finite "minus infinity" for padding: exp underflows to 0, gradients stay 0


def plackett_luce_log_prob(
    scores: torch.Tensor, order: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """log P of picking ``order`` (item indices, first pick first) one at a time without
    replacement, each pick ∝ exp(score) among the ``mask``-ed items not yet picked:
    ``Σ_j s_oj − log Σ_{i remaining} exp(s_i)``. 0 for an empty order."""
    n = torch.tensor([order.numel()], device=scores.device)
    return plackett_luce_log_probs(scores[None], order.view(1, -1), n, mask[None])[0]


def plackett_luce_log_probs(
    scores: torch.Tensor, orders: torch.Tensor, n_picked: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``plackett_luce_log_prob`` of ``N`` rows at once (a few tensor ops, no host sync):
    row r picks ``orders[r, :n_picked[r]]`` (the rest is padding) among the ``mask[r]``
    items of ``scores[r]``. Shapes ``(N, I)``, ``(N, L)``, ``(N,)``, ``(N, I)`` → ``(N,)``."""
    s = scores.float()
    pos = torch.arange(orders.shape[1], device=s.device)
    valid = pos[None, :] < n_picked.to(s.device)[:, None]
    idx = torch.where(valid, orders, torch.zeros_like(orders))
    picked = s.gather(1, idx)
    taken = torch.zeros(s.shape, dtype=torch.int32, device=s.device)
    taken = taken.scatter_add(1, idx, valid.to(torch.int32)) > 0
    # log Σ_remaining exp: a reverse log-cumsum-exp over the picks, then the unpicked mass.
    # (Subtracting the picked mass from the total cancels catastrophically in float32 once a
    # confident policy has taken its likely items: wrong log π and gradients.)
    rest = torch.logsumexp(torch.where(mask & ~taken, s, _FAR), 1)
    tail = torch.logcumsumexp(torch.where(valid, picked, _FAR).flip(1), 1).flip(1)
    denom = torch.logaddexp(tail, rest[:, None])
    return torch.where(valid, picked - denom, 0.0).sum(1)
