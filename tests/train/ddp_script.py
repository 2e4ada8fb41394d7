"""One DDP training run for tests/train/test_ddp.py: `python ddp_script.py spec.json`.

Lightning's ddp strategy runs this script again for every further rank (LOCAL_RANK=1, ...), so everything
here runs on every rank. The spec names the corpus, the output folders, the model, the `train` settings
over the smoke profile, and a log folder where each rank records what the test checks: the batches it
trained on (a hash per step), the files it wrote through the pipeline's writers, its tokens and seconds.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

torch.set_num_threads(1)


def batch_hash(batch) -> str:
    return hashlib.sha1(batch.src.numpy().tobytes() + batch.tgt_out.numpy().tobytes()).hexdigest()[:16]


def smoke_params(train: dict):
    """The smoke profile as the training tests use it (no dropout: runs compare exactly), with `train`."""
    from pipeline.config import load_params

    params = load_params(ROOT / "params.yaml", profile="smoke")
    params.model.dropout = params.model.attention_dropout = 0.0
    params.train.val_every = 10
    params.train.val_bleu_sentences = 2
    params.train.logger = "csv"
    for key, value in train.items():
        setattr(params.train, key, value)
    return params


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    from pipeline.model import checkpoint
    from pipeline.train import api, run

    log = Path(spec["log_dir"])
    log.mkdir(parents=True, exist_ok=True)

    def append(kind: str, line: str) -> None:
        with (log / f"{kind}.rank{run._global_rank()}.txt").open("a") as handle:
            handle.write(line + "\n")

    step = run._TransferBatch.training_step

    def training_step(self, batch, batch_idx):
        append("batches", f"{self.global_step} {batch_hash(batch)}")
        return step(self, batch, batch_idx)

    save, write = checkpoint.save_checkpoint, api.write_json

    def save_checkpoint(model, folder, meta=None):
        append("writes", f"checkpoint {folder}")
        return save(model, folder, meta=meta)

    def write_json(path, obj):
        append("writes", f"json {path}")
        return write(path, obj)

    throughput = run._job_throughput

    def job_throughput(module):
        append("throughput", json.dumps({"tokens": module.tokens_seen, "seconds": module.train_seconds}))
        return throughput(module)

    run._TransferBatch.training_step = training_step
    checkpoint.save_checkpoint, api.write_json, run._job_throughput = save_checkpoint, write_json, job_throughput
    api.RESUME_ROOT = Path(spec["resume_root"])

    params = smoke_params(spec["train"])
    metrics = api.train_model(params, spec["model"], Path(spec["corpus"]), Path(spec["out"]),
                              Path(spec["reports"]))
    append("metrics", json.dumps(metrics))


if __name__ == "__main__":
    main()
