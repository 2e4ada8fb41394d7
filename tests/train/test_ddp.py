"""Data-parallel training on 2 CPU processes (Lightning's ddp strategy, gloo), with and without expert
parallelism, against one process taking the same global batch.

Each run goes through `tests/train/ddp_script.py` (Lightning starts rank 1 by running the script again):
10 steps, then the same command with max_steps 20, which resumes. The reference trains the same model in
this process for 20 steps with `accumulate_grad_batches=2`: at step s it accumulates global batches 2s and
2s+1 with half weight each, which is exactly what DDP computes (rank r trains on global batch 2s+r, the
gradients are averaged, then clipped and applied once).

Tolerance: two computations of the same maths that add in a different order differ by rounding (~1e-7),
and Adam divides each update by the gradient's own running scale, so a gradient that is zero in exact
arithmetic turns into lr-sized steps of arbitrary sign. That is the case of the attention key biases: a
shift shared by every key of a query leaves the softmax unchanged, so their true gradient is 0 and they do
not change the model's output. Every other parameter must agree within 1e-5, the key
biases are left out of that comparison, and the logits on validation batches must agree within 1e-4.
Measured: plain DDP is bit-identical to the reference; expert parallel differs by ~3e-7 (parameters) and
~1e-6 (logits).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.model.checkpoint import load_checkpoint
from pipeline.train import api, run

SCRIPT = Path(__file__).resolve().parent / "ddp_script.py"
sys.path.insert(0, str(SCRIPT.parent))
from ddp_script import batch_hash, smoke_params  # noqa: E402

MODEL = "token_moe"
WORLD = 2
PARAM_TOL, LOGIT_TOL = 1e-5, 1e-4
DDP = {"accelerator": "cpu", "devices": WORLD, "strategy": "ddp", "num_threads": 1}


def _launch(root: Path, corpus: Path, max_steps: int, **train) -> subprocess.CompletedProcess:
    spec = {"log_dir": str(root / f"log{max_steps}"), "resume_root": str(root / "resume"), "model": MODEL,
            "corpus": str(corpus), "out": str(root / "model"), "reports": str(root / "reports"),
            "train": {**DDP, "max_steps": max_steps, **train}}
    path = root / f"spec{max_steps}.json"
    path.write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DVC_NO_ANALYTICS": "1"}
    env.pop("LOCAL_RANK", None)
    done = subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _read(log: Path, kind: str, rank: int) -> list[str]:
    path = log / f"{kind}.rank{rank}.txt"
    return path.read_text().splitlines() if path.exists() else []


def _runs(root: Path, corpus: Path, **train) -> dict:
    first = _launch(root, corpus, 10, **train)
    second = _launch(root, corpus, 20, **train)
    logs = {steps: root / f"log{steps}" for steps in (10, 20)}
    return {"root": root, "logs": logs, "stderr": first.stderr + second.stderr,
            "metrics": {s: [json.loads(x) for r in range(WORLD) for x in _read(log, "metrics", r)]
                        for s, log in logs.items()}}


@pytest.fixture(scope="module")
def reference(tiny_corpus, tmp_path_factory):
    """One process, 20 steps, two batches accumulated per step; the batches it saw, in order."""
    root = tmp_path_factory.mktemp("reference")
    params = smoke_params({"max_steps": 20, "num_threads": 1})
    vocab, languages = api.load_vocab(tiny_corpus), api.corpus_languages(tiny_corpus)
    model = api.build_model(params, MODEL, vocab, languages)
    job = api.make_job(params, MODEL, model, tiny_corpus, root / "model", root / "reports", vocab, languages)
    job.resume_dir = root / "resume"
    seen = []
    step, trainer = run._TransferBatch.training_step, run._trainer

    def training_step(self, batch, batch_idx):
        seen.append(batch_hash(batch))
        return step(self, batch, batch_idx)

    patch = pytest.MonkeyPatch()
    patch.setattr(run._TransferBatch, "training_step", training_step)
    patch.setattr(run, "_trainer", lambda **kw: trainer(**kw, accumulate_grad_batches=WORLD))
    try:
        metrics = run.fit(job)
    finally:
        patch.undo()
    assert metrics["steps"] == 20 and len(seen) == 40
    return {"model": copy.deepcopy(job.model).eval(), "batches": seen}


@pytest.fixture(scope="module")
def ddp(tiny_corpus, tmp_path_factory):
    return _runs(tmp_path_factory.mktemp("ddp"), tiny_corpus)


@pytest.fixture(scope="module")
def ddp_expert_parallel(tiny_corpus, tmp_path_factory):
    return _runs(tmp_path_factory.mktemp("ddp_ep"), tiny_corpus, expert_parallel=True)


def _check_ranks_and_outputs(runs: dict, reference: dict) -> None:
    # each rank trained on its own batches: rank r at step s on global batch 2s + r, as the reference saw them
    for steps, log in runs["logs"].items():
        for rank in range(WORLD):
            lines = [line.split() for line in _read(log, "batches", rank)]
            assert [int(s) for s, _ in lines] == list(range(steps - 10, steps)), (steps, rank)
            assert [h for _, h in lines] == [reference["batches"][WORLD * int(s) + rank] for s, _ in lines]
        # the checkpoint and metrics written once, by rank 0
        assert _read(log, "writes", 1) == []
        assert sorted(x.split()[0] for x in _read(log, "writes", 0)) == ["checkpoint", "json"]
    root = runs["root"]
    assert sorted(p.name for p in (root / "model").iterdir()) == ["config.json", "meta.json", "model.safetensors"]
    rows = (root / "reports" / "train_curve.csv").read_text().splitlines()[1:]
    assert len(rows) == len(set(rows))  # no row written twice (by two ranks)
    # resume: the second launch continued from the first one's checkpoint
    final = [m for m in runs["metrics"][20] if "model" in m]  # rank 0's, from `finish`
    assert len(final) == 1 and final[0]["resumed_from_step"] == 10 and final[0]["steps"] == 20
    # tokens/s of the whole job: both ranks' tokens over the slower rank's seconds
    ranks = [json.loads(_read(runs["logs"][20], "throughput", r)[0]) for r in range(WORLD)]
    assert final[0]["world_size"] == WORLD
    assert final[0]["tokens_per_second"] == pytest.approx(
        sum(r["tokens"] for r in ranks) / max(r["seconds"] for r in ranks), rel=1e-9)
    assert final[0]["tokens_per_second"] > max(r["tokens"] / r["seconds"] for r in ranks)
    assert "sync_dist" not in runs["stderr"]  # every epoch-level metric is reduced over the ranks


def _check_equals_reference(runs: dict, reference: dict, batch) -> dict:
    trained = load_checkpoint(runs["root"] / "model").eval()
    expected = reference["model"]
    diffs = {}
    for name, value in expected.state_dict().items():
        diffs[name] = float((trained.state_dict()[name] - value).abs().max())
    key_biases = {n for n in diffs if n.endswith(".k.bias")}
    worst = max(d for n, d in diffs.items() if n not in key_biases)
    assert worst <= PARAM_TOL, {n: d for n, d in diffs.items() if d > PARAM_TOL}
    with torch.no_grad():
        a = trained(batch.src, batch.tgt_in, batch.src_lang, batch.tgt_lang).logits
        b = expected(batch.src, batch.tgt_in, batch.src_lang, batch.tgt_lang).logits
    logits = float((a - b).abs().max())
    assert logits <= LOGIT_TOL
    print(f"\n{runs['root'].name}: largest parameter difference {worst:.2g} (key biases "
          f"{max(diffs[n] for n in key_biases):.2g}), largest logit difference {logits:.2g}")
    return diffs


@pytest.fixture(scope="module")
def valid_batch(tiny_corpus):
    """The first validation batch (both directions' sentences, length-bucketed)."""
    from pipeline.train.examples import load_examples

    vocab, languages = api.load_vocab(tiny_corpus), api.corpus_languages(tiny_corpus)
    examples = load_examples(tiny_corpus, "valid", vocab, languages, 128)
    return run.fixed_batches([e for d in sorted(examples) for e in examples[d]], 512, 64, vocab.pad_id,
                             vocab.bos_id)[0]


def test_ddp_trains_each_rank_on_its_batches_writes_once_and_resumes(ddp, reference):
    _check_ranks_and_outputs(ddp, reference)
    assert all(not m["expert_parallel"] for m in ddp["metrics"][20])


def test_ddp_equals_one_process_with_the_same_global_batch(ddp, reference, valid_batch):
    _check_equals_reference(ddp, reference, valid_batch)


def test_expert_parallel_training_equals_one_process(ddp_expert_parallel, reference, valid_batch):
    """Experts sharded over the 2 ranks (2 of the 4 each), checkpoints gathered whole, resumed from one."""
    _check_ranks_and_outputs(ddp_expert_parallel, reference)
    assert all(m["expert_parallel"] for m in ddp_expert_parallel["metrics"][20])
    resume = torch.load(ddp_expert_parallel["root"] / "resume" / MODEL / "last.ckpt", map_location="cpu",
                        weights_only=False)
    experts = resume["state_dict"]["model.decoder.layers.1.ffn.experts.w_in"]
    assert experts.shape[0] == reference["model"].cfg.num_experts  # whole, not one rank's shard
    moments = [v for s in resume["optimizer_states"][0]["state"].values() for k, v in s.items()
               if k == "exp_avg" and v.shape == experts.shape]
    assert moments  # the experts' Adam moments are whole too
    _check_equals_reference(ddp_expert_parallel, reference, valid_batch)


def test_expert_parallel_on_one_process_is_a_clear_error(tiny_corpus, tmp_path):
    from pipeline.errors import PipelineError

    params = smoke_params({"max_steps": 2, "num_threads": 1, "expert_parallel": True})
    vocab, languages = api.load_vocab(tiny_corpus), api.corpus_languages(tiny_corpus)
    model = api.build_model(params, MODEL, vocab, languages)
    job = api.make_job(params, MODEL, model, tiny_corpus, tmp_path / "m", tmp_path / "r", vocab, languages)
    job.resume_dir = tmp_path / "resume"
    with pytest.raises(PipelineError, match=r"^train\.expert_parallel: true needs several processes") as err:
        run.fit(job)
    assert "\n" not in str(err.value)
