"""Greedy and beam search, the cache against no cache, and `translate` with a fake vocabulary."""

import pytest
import torch

from pipeline.config import DecodeConfig
from pipeline.decode import beam_search, greedy_search, token_batches, translate
from tiny_models import BOS, EOS, PAD, FakeVocab, random_batch, tiny_model


def _model(routing=("token", "target"), seed=0):
    model = tiny_model(*routing, seed=seed)
    with torch.no_grad():  # a random model rarely ends: make eos likelier, for varied lengths
        model.embed.weight[EOS] *= 4.0
    return model


def _sources(batch=4):
    src, _, sl, tl = random_batch(batch=batch, src_len=8)
    src[:, -1] = torch.where(src[:, -1] == PAD, PAD, EOS)
    return src, sl, tl


@pytest.mark.parametrize("routing", [("token", "target"), ("sentence", "sentence"), ("none", "none")],
                         ids=lambda r: "/".join(r))
def test_beam_search_with_beam_one_equals_greedy(routing):
    model = _model(routing)
    src, sl, tl = _sources()
    greedy = greedy_search(model, src, sl, tl, max_len=12)
    assert greedy == beam_search(model, src, sl, tl, beam_size=1, length_penalty=0.6, max_len=12)
    assert any(0 < len(h) < 12 for h in greedy) or any(len(h) == 12 for h in greedy)


@pytest.mark.parametrize("routing, seed", [(("token", "target"), 2), (("sentence", "sentence"), 0),
                                           (("pair", "pair"), 3)], ids=["token/target", "sentence", "pair"])
def test_cached_decoding_equals_uncached(routing, seed):
    model = _model(routing, seed=seed)  # seeds where sentences end at different steps
    src, sl, tl = _sources()
    assert greedy_search(model, src, sl, tl, 10) == greedy_search(model, src, sl, tl, 10, use_cache=False)
    beam = beam_search(model, src, sl, tl, 3, 0.6, 10)
    assert beam == beam_search(model, src, sl, tl, 3, 0.6, 10, use_cache=False)


def test_beam_search_of_a_batch_equals_each_sentence_alone():
    """Sentences leave the batch at different steps (per-sentence limits); the beams of the others
    must keep their own cross-attention memory through every reorder."""
    model = _model(("token", "target"), seed=2)
    src, sl, tl = _sources(batch=5)
    limits = [1, 3, 6, 10, 10]
    batched = beam_search(model, src, sl, tl, 3, 0.6, limits)
    alone = [beam_search(model, src[b:b + 1], sl[b:b + 1], tl[b:b + 1], 3, 0.6, limits[b])[0]
             for b in range(src.shape[0])]
    assert batched == alone
    assert len({len(h) for h in batched}) > 2  # the sentences really did end at different steps


def test_greedy_is_the_argmax_path_and_respects_per_sentence_limits():
    model = _model()
    src, sl, tl = _sources(batch=4)
    limits = [2, 5, 20, 20]
    hyps = greedy_search(model, src, sl, tl, max_len=limits)
    ended = [len(h) < m for h, m in zip(hyps, limits)]
    assert all(len(h) <= m for h, m in zip(hyps, limits))
    assert any(ended) and not all(ended)  # both ways of stopping happen here
    for b, h in enumerate(hyps):  # re-scored teacher-forced, each token is the argmax after its prefix
        logits = model(src[b:b + 1], torch.tensor([[BOS, *h]]), sl[b:b + 1], tl[b:b + 1]).logits[0]
        logits[:, [PAD, BOS]] = float("-inf")  # never generated
        assert logits.argmax(-1)[:len(h)].tolist() == h
        if ended[b]:
            assert logits[len(h)].argmax().item() == EOS


def test_beam_search_finds_a_hypothesis_at_least_as_good_as_greedy():
    model = _model(seed=0)
    src, sl, tl = _sources()

    def score(hyp, b):
        tgt_in = torch.tensor([[BOS, *hyp]])
        out = torch.tensor([[*hyp, EOS]])
        lp = model(src[b:b + 1], tgt_in, sl[b:b + 1], tl[b:b + 1]).logits.log_softmax(-1)
        total = lp.gather(-1, out[..., None]).sum().item()
        return total / ((5 + len(hyp) + 1) / 6) ** 0.6

    greedy = greedy_search(model, src, sl, tl, 30)
    beam = beam_search(model, src, sl, tl, 4, 0.6, 30)
    both_ended = [b for b in range(src.shape[0]) if len(greedy[b]) < 30 and len(beam[b]) < 30]
    assert both_ended
    for b in both_ended:
        assert score(beam[b], b) >= score(greedy[b], b) - 1e-5


def test_search_leaves_the_training_mode_as_it_was():
    model = _model().train()
    src, sl, tl = _sources(batch=2)
    greedy_search(model, src, sl, tl, 4)
    beam_search(model, src, sl, tl, 2, 1.0, 4)
    assert model.training


def test_translate_restores_order_and_does_not_depend_on_batching():
    model = _model()
    sources = ["hello world", "a", "the quick brown fox", "", "bible verse seven"]
    vocab = FakeVocab()
    cfg = DecodeConfig(beam_size=1, max_len_a=1.0, max_len_b=3, batch_tokens=40)
    batched = translate(model, vocab, sources, "en", "de", cfg)
    one_by_one = [translate(model, vocab, [s], "en", "de", cfg)[0] for s in sources]
    assert batched == one_by_one
    assert len(batched) == len(sources)
    beam = translate(model, vocab, sources, "en", "de", DecodeConfig(beam_size=2, batch_tokens=40))
    assert len(beam) == len(sources) and all(isinstance(s, str) for s in beam)
    assert translate(model, vocab, [], "en", "de", cfg) == []


def test_token_batches_respect_the_budget():
    lengths = [5, 12, 3, 12, 7, 1]
    batches = token_batches(lengths, budget=24)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert batches[0] == [1, 3]  # longest first
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 24
    assert all(len(b) == 1 for b in token_batches(lengths, budget=1))
