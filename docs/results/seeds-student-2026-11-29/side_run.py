"""Side run: seed 2's student and dense_long, trained by the seeds stage's own code (`pipeline.seeds._train`)
from the seed-2 teacher and dense that `dvc exp run -S 'seeds.extra=[2]'` made in /work/seedexp."""
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, "/work/main")
from pipeline.config import load_params  # noqa: E402
from pipeline.evaluate import evaluate_model  # noqa: E402
from pipeline.seeds import _train, with_seed  # noqa: E402

logging.basicConfig(level=logging.INFO)
p = with_seed(load_params("/work/main/params.yaml"), 2)
corpus = Path("/work/seedexp/data/corpus")
m_dir, r_dir = Path("models/seed2"), Path("reports/seed2")
row = {}
for name in ("student", "dense_long"):
    t0 = time.perf_counter()
    _train(p, name, corpus, m_dir, r_dir / "train" / name, run_name=f"seed2/{name}")
    t1 = time.perf_counter()
    metrics = evaluate_model(f"{name}@seed2", m_dir / name, corpus, r_dir / "evaluate" / name, p.evaluate,
                             high_resource=p.data.high_resource)
    row[name] = {"bleu": metrics["bleu"], "train_seconds": t1 - t0, "evaluate_seconds": time.perf_counter() - t1}
    print(name, row[name], flush=True)
Path("side_row.json").write_text(json.dumps(row, indent=1))
