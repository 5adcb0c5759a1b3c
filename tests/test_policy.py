"""taco.rl.policy on a tiny BERT with the embedded MiniLM tokenizer."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertForTokenClassification

from taco.compress.compressor import Compressor
from taco.compress.encoder import embedded_encoder_path
from taco.compress.selection import word_scores
from taco.compress.text import render
from taco.rl import policy
from taco.rl.reinforce import sequence_log_prob
from tests.helpers.training import tiny_bert_config

TEXT = (
    "The steam engine was improved by James Watt in 1776. It used a separate condenser.\n"
    "Engines powered mills, pumps and locomotives across Britain."
)
QUESTION = "Who improved the steam engine?"


@pytest.fixture(scope="module")
def compressor() -> Compressor:
    tok = AutoTokenizer.from_pretrained(str(embedded_encoder_path()))
    torch.manual_seed(0)
    model = BertForTokenClassification(tiny_bert_config(tok.vocab_size, 64))
    return Compressor(model, tok, device="cpu", max_seq_len=64)


def _bias(comp: Compressor, keep: float) -> None:
    with torch.no_grad():
        comp.model.classifier.weight.zero_()
        comp.model.classifier.bias.copy_(torch.tensor([0.0, keep]))


def test_word_probabilities_equal_inference_scores(compressor: Compressor) -> None:
    docs = policy.prepare(compressor, [TEXT, TEXT], ["", QUESTION])
    with torch.no_grad():
        enc = policy.encode(compressor, docs)
    inference = compressor.token_probabilities([TEXT, TEXT], ["", QUESTION])
    for b in range(2):
        n = docs[b].al.n_words
        expected = word_scores(inference[b], docs[b].al)
        got = enc.logp_keep[b, :n].exp().numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5)
    # the question changes what the encoder sees, but is never an action
    assert not np.allclose(enc.logp_keep[0, :n].numpy(), enc.logp_keep[1, :n].numpy())
    assert docs[0].al.n_words == docs[1].al.n_words


def test_long_prompt_is_one_sequence_over_several_chunks(compressor: Compressor) -> None:
    long_text = " ".join([TEXT] * 6)
    docs = policy.prepare(compressor, [long_text, "Short one."])
    assert len(docs[0].chunks) > 1
    with torch.no_grad():
        enc = policy.encode(compressor, docs, level="token")
    assert enc.logp_keep.shape == (2, docs[0].al.n_tokens)
    assert enc.mask[0].all()
    assert int(enc.mask[1].sum()) == docs[1].al.n_tokens  # padding is no action
    actions = policy.sample(enc, 3, torch.Generator().manual_seed(0))
    assert actions.shape == (2, 3, docs[0].al.n_tokens)
    assert int(actions[1, :, docs[1].al.n_tokens :].sum()) == 0


def test_one_encoder_pass_serves_all_samples(compressor: Compressor) -> None:
    calls: list[int] = []
    handle = compressor.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        counts = []
        for k in (1, 8):
            calls.clear()
            docs = policy.prepare(compressor, ["Another short prompt here.", "And one more."])
            enc = policy.encode(compressor, docs)
            out = policy.build(enc, policy.sample(enc, k))
            assert len(out.texts[0]) == k
            counts.append(len(calls))
    finally:
        handle.remove()
    assert counts == [1, 1]  # both prompts share one batch, whatever k


def test_forced_words_are_kept_and_not_actions(compressor: Compressor) -> None:
    _bias(compressor, -30.0)  # p(keep) ≈ 0 everywhere
    try:
        docs = policy.prepare(compressor, [TEXT])
        enc = policy.encode(compressor, docs, force_tokens=("\n", "Watt"), keep_digits=True)
        out = policy.build(enc, policy.sample(enc, 4, torch.Generator().manual_seed(1)))
    finally:
        torch.manual_seed(0)
        compressor.model.classifier.reset_parameters()
    words = docs[0].al.words()
    forced = [words.index("Watt"), words.index("1776")]
    assert not enc.mask[0, forced].any()
    for keep, text in zip(out.keep_words[0], out.texts[0], strict=True):
        assert keep[forced].all() and keep.sum() == 2
        assert text == "Watt 1776"


def test_all_kept_rebuilds_the_original_text(compressor: Compressor) -> None:
    _bias(compressor, 30.0)
    try:
        docs = policy.prepare(compressor, [TEXT], [QUESTION])
        enc = policy.encode(compressor, docs)
        out = policy.build(enc, policy.sample(enc, 2))
    finally:
        torch.manual_seed(0)
        compressor.model.classifier.reset_parameters()
    assert out.texts[0] == [TEXT, TEXT]
    assert out.kept_share[0] == [1.0, 1.0]


def test_token_rule_keeps_a_word_only_if_all_its_tokens_are_kept(compressor: Compressor) -> None:
    docs = policy.prepare(compressor, ["unbelievably tokenization works"])
    al = docs[0].al
    assert al.word_n_tokens[0] > 1  # a multi-token word
    with torch.no_grad():
        enc = policy.encode(compressor, docs, level="token", force_tokens=())
    acts = torch.ones((1, 2, al.n_tokens), dtype=torch.uint8)
    acts[0, 1, int(al.word_first_token[0]) + 1] = 0  # drop one sub-token of word 0
    masks = policy.word_masks(enc, acts)
    assert masks[0][0].all()
    assert not masks[0][1][0] and masks[0][1][1:].all()


def test_sampled_texts_are_in_order_subsequences(compressor: Compressor) -> None:
    docs = policy.prepare(compressor, [TEXT])
    enc = policy.encode(compressor, docs)
    out = policy.build(enc, policy.sample(enc, 5, torch.Generator().manual_seed(3)))
    words = docs[0].al.words()
    for keep, text in zip(out.keep_words[0], out.texts[0], strict=True):
        assert text == render(docs[0].al, keep)
        pos = 0
        for w in (words[i] for i in np.flatnonzero(keep)):
            pos = text.index(w, pos) + len(w)  # kept words appear in order
        assert len(text) < len(TEXT)
    assert len({t for t in out.texts[0]}) > 1  # p ≈ 0.5 → samples differ


def test_log_prob_gradient_reaches_the_encoder(compressor: Compressor) -> None:
    compressor.model.zero_grad()
    docs = policy.prepare(compressor, [TEXT], [QUESTION])
    enc = policy.encode(compressor, docs)
    actions = policy.sample(enc, 2)
    lp = sequence_log_prob(enc.logp_keep, enc.logp_drop, actions, enc.mask)
    assert lp.shape == (1, 2) and torch.isfinite(lp).all()
    lp.sum().backward()
    grad = compressor.model.classifier.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    emb = compressor.model.bert.embeddings.word_embeddings.weight.grad
    assert emb is not None and emb.abs().sum() > 0
    compressor.model.zero_grad()


def test_budget_sampling_meets_the_budget_like_inference(compressor: Compressor) -> None:
    docs = policy.prepare(compressor, [TEXT, "Tiny text here."], [QUESTION, ""])
    enc = policy.encode(compressor, docs, force_tokens=("\n", "Watt"))
    actions, logp = policy.sample_budget(enc, 4, 0.5, torch.Generator().manual_seed(0))
    assert actions.shape == (2, 4, enc.mask.shape[1]) and logp.shape == (2, 4)
    out = policy.build(enc, actions)
    for b, doc in enumerate(docs):
        al = doc.al
        budget = int(0.5 * al.n_tokens)
        for keep in out.keep_words[b]:
            kept = int(al.word_n_tokens[keep].sum())
            assert budget - int(al.word_n_tokens.max()) < kept <= max(budget, 0) or b == 1
            assert keep[enc.forced[b]].all()
    assert len({t for t in out.texts[0]}) > 1  # noisy scores → different picks
    assert torch.isfinite(logp).all() and (logp <= 0).all()
    logp.sum().backward()
    assert compressor.model.classifier.weight.grad is not None
    compressor.model.zero_grad()
    with pytest.raises(ValueError, match="word-level"):
        policy.sample_budget(policy.encode(compressor, docs, level="token"), 2, 0.5)


def test_sampling_temperature_explores_and_scales_log_pi(compressor: Compressor) -> None:
    """``temperature`` τ: log π is Plackett–Luce over scores / τ in the sampled pick order
    (rebuilt from the same generator's noise), and a higher τ strays further from what
    inference keeps (the τ → 0 limit: the top of the scores, the same at any τ)."""
    from taco.rl.reinforce import plackett_luce_log_prob

    docs = policy.prepare(compressor, [TEXT], [QUESTION])
    enc = policy.encode(compressor, docs, force_tokens=())
    n = docs[0].al.n_words
    mask = enc.mask[0, :n]
    greedy, _ = policy.sample_budget(
        enc, 1, 0.5, torch.Generator().manual_seed(0), temperature=1e-4
    )
    g = greedy[0, 0, :n].bool().numpy()
    away = []
    for tau in (0.25, 1.0, 4.0):
        actions, logp = policy.sample_budget(
            enc, 16, 0.5, torch.Generator().manual_seed(0), temperature=tau
        )
        kept = actions[0, :, :n].bool().numpy()
        away.append(float(np.mean([(k != g).sum() for k in kept])))
        scores = ((enc.logp_keep - enc.logp_drop)[0, :n] / tau).detach()
        u = torch.rand((16, n), generator=torch.Generator().manual_seed(0))
        noisy = scores - torch.log(-torch.log(u.clamp(1e-12, 1 - 1e-7)))
        for j in (0, 7):
            picked = np.flatnonzero(kept[j] & mask.numpy())
            order = picked[np.argsort(-noisy[j, picked].numpy(), kind="stable")]
            want = plackett_luce_log_prob(scores, torch.as_tensor(order), mask)
            assert float(logp[0, j].detach()) == pytest.approx(float(want), abs=1e-3)
    assert away[0] < away[1] < away[2]
    with pytest.raises(ValueError, match="temperature"):
        policy.sample_budget(enc, 2, 0.5, temperature=0.0)


def test_span_budget_sampling_keeps_whole_sentences(compressor: Compressor) -> None:
    from taco.compress.text import span_ids
    from taco.rl.reinforce import plackett_luce_log_prob, word_log_probs

    docs = policy.prepare(compressor, [TEXT], [QUESTION])
    enc = policy.encode(compressor, docs, force_tokens=())
    gen = torch.Generator().manual_seed(1)
    actions, logp = policy.sample_budget(enc, 6, 0.5, gen, unit="sentence")
    al = docs[0].al
    spans = span_ids(al, "sentence")
    n = al.n_words
    texts = policy.build(enc, actions).texts[0]
    assert len(set(texts)) > 1
    for j in range(6):
        keep = actions[0, j, :n].bool().numpy()
        assert int(al.word_n_tokens[keep].sum()) <= int(0.5 * al.n_tokens)
        partial = [u for u in range(spans.max() + 1) if 0 < keep[spans == u].mean() < 1]
        assert len(partial) <= 1  # whole sentences, and the start of at most one more
        for u in partial:
            ks = keep[spans == u]
            assert (np.diff(ks.astype(int)) <= 0).all()  # its prefix
    # log π is Plackett-Luce over sentences scored by mean word p(keep)
    st = torch.as_tensor(spans)
    lk, ld = word_log_probs(enc.logp_keep[0, :n], enc.logp_drop[0, :n], st, int(spans.max()) + 1)
    keep = actions[0, 0, :n].bool().numpy()
    picked = np.unique(spans[keep])
    mask = torch.ones(int(spans.max()) + 1, dtype=torch.bool)
    candidates = [
        float(plackett_luce_log_prob((lk - ld).detach(), torch.as_tensor(o), mask))
        for o in itertools.permutations(picked.tolist())
    ]
    got = float(logp[0, 0].detach())
    assert min(abs(got - c) for c in candidates) < 1e-4  # in some pick order
    logp.sum().backward()
    assert compressor.model.classifier.weight.grad is not None
    compressor.model.zero_grad()


def test_budget_sampling_counts_in_the_token_counters_units() -> None:
    """With a ``token_counter`` (training sets the reward LLM's), sampling budgets in its
    units, as ``Compressor.compress`` does: a counter that makes long words expensive must
    change which word sets fit, and every sample stays within its budget."""
    tok = AutoTokenizer.from_pretrained(str(embedded_encoder_path()))
    torch.manual_seed(0)
    model = BertForTokenClassification(tiny_bert_config(tok.vocab_size, 64))
    chars = Compressor(model, tok, device="cpu", max_seq_len=64, token_counter=len)
    docs = policy.prepare(chars, [TEXT], [QUESTION])
    enc = policy.encode(chars, docs, force_tokens=())
    origin, costs = enc.budget[0]
    al = docs[0].al
    assert origin == len(al.text) and costs.tolist() == [len(w) for w in al.words()]
    actions, _ = policy.sample_budget(enc, 8, 0.3, torch.Generator().manual_seed(0))
    kept = [actions[0, j, : al.n_words].bool().numpy() for j in range(8)]
    budget = int(0.3 * origin)
    # the rebuilt text's real count fits (word costs leave out the spaces between words)
    texts = policy.build(enc, actions).texts[0]
    assert all(budget - 2 * (costs.max() + 1) < len(t) <= budget for t in texts)
    assert all(int(costs[k].sum()) <= budget for k in kept)
    # in encoder tokens the same samples are not at 30%: the units really changed
    enc_share = [al.word_n_tokens[k].sum() / al.n_tokens for k in kept]
    assert max(abs(s - 0.3) for s in enc_share) > 0.005
    # the greedy path agrees on the units
    out = chars.compress(TEXT, rate=0.3, question=QUESTION, force_tokens=())
    assert len(out.compressed_prompt) <= int(0.3 * len(TEXT))


@pytest.mark.parametrize("unit", ["word", "sentence"])
def test_position_prior_samples_around_what_inference_keeps(unit: str) -> None:
    """With a position prior β the near-greedy sample (τ → 0) keeps exactly what
    ``Compressor.compress`` deploys with the same β; log π is Plackett–Luce over
    (score − β·start) / τ; a huge β is truncation; β = 0 is the plain policy."""
    from taco.compress.selection import item_starts
    from taco.compress.text import span_ids
    from taco.rl.reinforce import plackett_luce_log_prob

    tok = AutoTokenizer.from_pretrained(str(embedded_encoder_path()))
    torch.manual_seed(0)
    model = BertForTokenClassification(tiny_bert_config(tok.vocab_size, 64))
    comp = Compressor(model, tok, device="cpu", max_seq_len=64, unit=unit)
    text = TEXT + " " + TEXT.replace("steam", "atmospheric")
    docs = policy.prepare(comp, [text], [QUESTION])
    enc = policy.encode(comp, docs, force_tokens=())
    al = docs[0].al
    n, gen = al.n_words, torch.Generator
    kept = {}
    for beta in (0.0, 2.0, 1e3):
        comp.position_prior = beta
        got, _ = policy.sample_budget(enc, 1, 0.5, gen().manual_seed(0), unit, 1, 1e-6, beta)
        out = comp.compress(text, rate=0.5, question=QUESTION, force_tokens=())
        deployed = np.zeros(n, dtype=bool)
        for s, _e in out.kept_spans:
            deployed[np.searchsorted(al.word_start, s)] = True
        kept[beta] = got[0, 0, :n].bool().numpy()
        np.testing.assert_array_equal(kept[beta], deployed)
    assert not np.array_equal(kept[0.0], kept[1e3])
    first_dropped = int(np.argmin(kept[1e3]))
    assert kept[1e3][:first_dropped].all() and first_dropped > 0  # truncation
    assert not kept[1e3][first_dropped + 1 :].any() or unit == "word"  # (word: a fill)
    # log π at β = 2, τ = 3 in the sampled order, rebuilt from the generator's noise
    spans = span_ids(al, unit)
    lk, ld = enc.logp_keep[0, :n], enc.logp_drop[0, :n]
    if unit != "word":
        from taco.rl.reinforce import word_log_probs

        lk, ld = word_log_probs(lk, ld, torch.as_tensor(spans), int(spans[-1]) + 1)
    starts = torch.as_tensor(item_starts(al, spans), dtype=torch.float32)
    scores = ((lk - ld).detach() - 2.0 * starts) / 3.0
    actions, logp = policy.sample_budget(enc, 4, 0.5, gen().manual_seed(3), unit, 1, 3.0, 2.0)
    u = torch.rand((4, len(starts)), generator=gen().manual_seed(3))
    noisy = scores - torch.log(-torch.log(u.clamp(1e-12, 1 - 1e-7)))
    for j in range(4):
        picked = np.unique(spans[actions[0, j, :n].bool().numpy()])
        order = picked[np.argsort(-noisy[j, picked].numpy(), kind="stable")]
        mask = torch.ones(len(starts), dtype=torch.bool)
        want = plackett_luce_log_prob(scores, torch.as_tensor(order), mask)
        assert float(logp[0, j].detach()) == pytest.approx(float(want), abs=1e-3)
