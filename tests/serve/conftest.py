"""Tiny models over the tiny corpus (tests/conftest.py `tiny_corpus`: en, de, fr and a real SentencePiece
model), trained a few steps so their translations stop at eos, saved the way the pipeline saves them."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from pipeline.config import ModelConfig, ModelSpec
from pipeline.data.corpus import load_split
from pipeline.data.vocab import Vocab
from pipeline.decode import pad_batch
from pipeline.extract import extract_subnetworks, save_subnetworks
from pipeline.model import Seq2Seq, Seq2SeqConfig, save_checkpoint

LANGUAGES = ["en", "de", "fr"]


def tiny(vocab, encoder_routing="none", decoder_routing="none", seed=0, max_positions=48) -> Seq2Seq:
    torch.manual_seed(seed)
    model_cfg = ModelConfig(d_model=32, num_heads=2, d_ff=48, encoder_layers=2, decoder_layers=2, dropout=0.0,
                            attention_dropout=0.0, max_positions=max_positions, num_experts=4, top_k=2)
    cfg = Seq2SeqConfig.from_vocab(model_cfg, ModelSpec(encoder_routing, decoder_routing), vocab, LANGUAGES)
    return Seq2Seq(cfg)


def train(model: Seq2Seq, vocab, corpus: Path, steps: int, seed: int = 0) -> Seq2Seq:
    """Adam on teacher-forced cross-entropy (+ the MoE auxiliary loss), 24 random training pairs a step."""
    data = [(d, p) for d, pairs in load_split(corpus, "train").items() for p in pairs]
    rng = random.Random(seed)
    opt = torch.optim.Adam(model.parameters(), lr=4e-3)
    model.train()
    for _ in range(steps):
        batch = rng.sample(data, 24)
        src = pad_batch([vocab.encode_source(p.source, d.split("-")[1]) for d, p in batch], vocab.pad_id)
        tgt = [vocab.encode_target(p.target) for _, p in batch]
        tgt_in = pad_batch([[vocab.bos_id, *t[:-1]] for t in tgt], vocab.pad_id)
        langs = [[LANGUAGES.index(x) for x in d.split("-")] for d, _ in batch]
        out = model(src, tgt_in, torch.tensor([s for s, _ in langs]), torch.tensor([t for _, t in langs]))
        loss = F.cross_entropy(out.logits.transpose(1, 2), pad_batch(tgt, vocab.pad_id),
                               ignore_index=vocab.pad_id) + out.aux_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def served(tmp_path_factory, tiny_corpus):
    """models/<name> folders as the pipeline writes them:
    dense (trained), dense_untrained (max_positions 24: its outputs run into the length cap),
    task_moe_tt (target/target, trained) and task_moe_sub (its sub-networks: fully dense),
    token_moe (token/token), task_moe (token/target) and task_moe_sub_token (its sub-networks: the
    encoder keeps its token-routed experts)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    vocab = Vocab(tiny_corpus / "spm.model")
    models = tmp_path_factory.mktemp("models")
    save_checkpoint(train(tiny(vocab), vocab, tiny_corpus, 150), models / "dense")
    save_checkpoint(tiny(vocab, seed=1, max_positions=24), models / "dense_untrained")
    task_tt = train(tiny(vocab, "target", "target", seed=2), vocab, tiny_corpus, 120, seed=1)
    save_checkpoint(task_tt, models / "task_moe_tt")
    save_subnetworks(extract_subnetworks(task_tt), models / "task_moe_sub", task_tt)
    save_checkpoint(tiny(vocab, "token", "token", seed=3), models / "token_moe")
    task_token = tiny(vocab, "token", "target", seed=4)
    save_checkpoint(task_token, models / "task_moe")
    save_subnetworks(extract_subnetworks(task_token), models / "task_moe_sub_token", task_token)
    torch.set_num_threads(threads)
    return SimpleNamespace(models=models, vocab=vocab, corpus=tiny_corpus)


@pytest.fixture(scope="session")
def exports(served, tmp_path_factory):
    """`exports(name, quantization)`: the CTranslate2 export of models/<name>, made once per session."""
    from pipeline.serve.ct2 import export_ctranslate2

    root, made = tmp_path_factory.mktemp("exports"), {}

    def get(name: str, quantization: str = "float32") -> Path:
        if (name, quantization) not in made:
            out = root / f"{name}-{quantization}"
            export_ctranslate2(served.models / name, out, served.vocab, quantization)
            made[name, quantization] = out
        return made[name, quantization]

    return get
