#!/usr/bin/env bash
# Reproduces the measured table in docs/results.md (about 40 minutes on a 2-core machine):
# naive min/max, each KL mode (one trial each, no fallback), the tuned default recipe on both backends and
# with both tuning engines (own tuner; INC's autotune with the plug-ins), and the fallback at work (both engines).
# Each run writes out/table/<name>/report.json; scripts/results_table.py turns them into the table.
set -u
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=out/table
mkdir -p "$OUT"
run() {  # name, recipe, overrides...
  local name=$1 recipe=$2; shift 2
  local sets=()
  for s in "$@"; do sets+=(--set "$s"); done
  echo "== $name"
  # a fresh cache directory per run: every wall time includes the FP32 baseline, as on a fresh machine
  INC_MT_CACHE=$(mktemp -d) $BIN/inc-mt tune "$recipe" "${sets[@]}" --set "outputs.dir=../$OUT/$name" \
    --set outputs.overwrite=replace
  echo "exit $?"
}
run naive_minmax recipes/reference_naive_minmax.yaml
for mode in symmetric independent conjugate; do
  run "kl_$mode" recipes/reference_kl.yaml calibration.kl_mode=$mode tuning.fallback=none tuning.max_trials=1
done
for engine in own inc; do
  run "tuned_kl_itex_$engine" recipes/reference_kl.yaml tuning.engine=$engine
  run "tuned_kl_default_$engine" recipes/reference_kl.yaml backend=default tuning.engine=$engine
  # the fallback at work on the real model: a criterion the all-INT8 trial misses (0.05 on an AVX2 EPYC,
  # 0.23 on an AMX Xeon: 0.1 was enough there)
  run "tuned_kl_strict_$engine" recipes/reference_kl.yaml tuning.criterion.max_drop=0.02 tuning.engine=$engine
done
$BIN/python scripts/results_table.py "$OUT"
