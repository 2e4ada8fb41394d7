"""Lever experiment: warm start + dense + token_moe under model overrides; prints val loss/BLEU and time.

Run from anywhere: it uses the repository this file sits in (its params.yaml and data/corpus) and writes
under $EXP_DIR (default: ../exp beside the repository)."""
import dataclasses, json, os, sys, time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from pipeline.config import load_params
from pipeline.train.api import train_warmstart, train_model
name = sys.argv[1]; overrides = json.loads(sys.argv[2]); models = sys.argv[3].split(",")
d = Path(os.environ.get("EXP_DIR", ROOT.parent / "exp")) / name; d.mkdir(parents=True, exist_ok=True); os.chdir(d)
params = load_params(ROOT / "params.yaml")
params = dataclasses.replace(params, model=dataclasses.replace(params.model, **overrides))
corpus = ROOT / "data" / "corpus"
out = {}
t = time.perf_counter()
if not (d / "models/warmstart/warmstart.json").exists():
    out["warmstart"] = train_warmstart(params, corpus, d / "models/warmstart", d / "reports/warmstart")
for m in models:
    if (d / f"reports/{m}/metrics.json").exists():
        continue
    out[m] = train_model(params, m, corpus, d / f"models/{m}", d / f"reports/{m}", d / "models/warmstart")
    print(m, {k: out[m][k] for k in ("val_loss", "val_bleu", "wall_seconds", "tokens_per_second")}, flush=True)
print("total", time.perf_counter() - t)
