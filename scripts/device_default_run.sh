#!/usr/bin/env bash
# The default pipeline on one GPU machine without DVC (no dvc or omegaconf there): the stage scripts in
# dvc.yaml's order, independent stages in parallel, on a carried prepared corpus (data/corpus).
# Usage there: OUT=<folder> bash scripts/device_default_run.sh   (PYTHONPATH must reach omegaconf)
# PROFILE=gpu runs profiles/gpu.yaml instead; carry a data/corpus prepared under it
# (`python -m stages.prepare ...` here with `profile: gpu` in params.yaml: 9 languages, about 46 s on 2 cores).
# Only the decoding batch budget differs from params.yaml (a speed knob: greedy/beam results are the same).
# Don't pipe this script's output through grep/tail on the device: a killed pipeline returns nothing.
# Logs and reports are packed into $OUT every minute, so a run cut off by its time limit still returns
# what it had (one earlier run did not, and showed nothing).
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" logs
export PYTHONUNBUFFERED=1 DVC_NO_ANALYTICS=1
start=$(date +%s)
t() { echo "[$(( $(date +%s) - start ))s] $*"; }
snap() { tar czf "$OUT/reports.tgz" reports logs 2>/dev/null; }  # after each phase: a cut-off run returns what it has
run() { local name=$1; shift; python3 -m "$@" > "logs/$name.log" 2>&1; local rc=$?; t "$name rc=$rc"; tail -2 "logs/$name.log"; }
sed -i 's/batch_tokens: 6000/batch_tokens: 40000/g' params.yaml
if [ -n "${PROFILE:-}" ]; then sed -i "s/^profile: default/profile: $PROFILE/" params.yaml; fi
grep '^profile:' params.yaml
python3 -c "import json; m=json.load(open('data/corpus/meta.json')); print('corpus languages', m.get('languages'))"
( while sleep 60; do snap; done ) & SNAPPER=$!; disown $SNAPPER  # every minute; `wait` skips it
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"
run warmstart stages.warmstart --corpus data/corpus --out models/warmstart --reports reports/train/warmstart
for m in dense token_moe task_moe; do
  run "train_$m" stages.train --model $m --corpus data/corpus --warmstart models/warmstart --out models/$m --reports reports/train/$m &
done; wait; snap
run distill_data stages.distill_data --teacher models/token_moe --corpus data/corpus --out data/distill &
run control stages.control --base models/dense --corpus data/corpus --out models/dense_long --reports reports/train/dense_long &
run extract stages.extract --model models/task_moe --corpus data/corpus --out models/task_moe_sub --report reports/extract.json &
for m in dense token_moe task_moe; do
  run "eval_$m" stages.evaluate --model $m --model-dir models/$m --corpus data/corpus --out reports/evaluate/$m &
done; wait; snap
run distill stages.distill --teacher models/token_moe --corpus data/corpus --distill-data data/distill --out models/student --reports reports/train/student &
run eval_task_moe_sub stages.evaluate --model task_moe_sub --model-dir models/task_moe_sub --corpus data/corpus --out reports/evaluate/task_moe_sub &
run eval_dense_long stages.evaluate --model dense_long --model-dir models/dense_long --corpus data/corpus --out reports/evaluate/dense_long &
run curves stages.curves --train-reports reports/train --corpus data/corpus --out reports/curves.json &
wait; snap
run eval_student stages.evaluate --model student --model-dir models/student --corpus data/corpus --out reports/evaluate/student
run compare stages.compare --evaluations reports/evaluate --corpus data/corpus --out reports/compare.json &
run benchmark stages.benchmark --models-dir models --corpus data/corpus --out reports/benchmark.json &
wait; snap
run report stages.report --reports reports --models-dir models --corpus data/corpus --out reports/report.md --plots reports/plots
snap
for m in dense token_moe task_moe student dense_long; do cp "models/$m/meta.json" "$OUT/meta_$m.json" 2>/dev/null; done
kill $SNAPPER; t done
