#!/usr/bin/env bash
# The default run from a fresh clone, timed
set -u
rm -rf /work/fresh9 /work/taskmoe-dvc-remote /work/pullcheck15 /work/citest21 /work/gpuprep
git clone -q /work/main /work/fresh9 && cd /work/fresh9
start=$(date +%s)
make repro
rc=$?
echo "MAKE_REPRO rc=$rc wall=$(( $(date +%s) - start ))s commit=$(git rev-parse HEAD)"
