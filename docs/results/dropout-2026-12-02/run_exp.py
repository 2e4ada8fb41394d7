"""Lever experiment: warm start + dense + token_moe under model overrides; prints val loss/BLEU and time."""
import dataclasses, json, os, sys, time
from pathlib import Path
sys.path.insert(0, "/work/main")
from pipeline.config import load_params
from pipeline.train.api import train_warmstart, train_model
name = sys.argv[1]; overrides = json.loads(sys.argv[2]); models = sys.argv[3].split(",")
d = Path("/work/exp") / name; d.mkdir(parents=True, exist_ok=True); os.chdir(d)
params = load_params(Path("/work/main/params.yaml"))
params = dataclasses.replace(params, model=dataclasses.replace(params.model, **overrides))
corpus = Path("/work/main/data/corpus")
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
