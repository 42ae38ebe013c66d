#!/usr/bin/env bash
# Reproduces the fully 8-bit table in docs/results.md (about 45 minutes on a 2-core machine): one tune per
# configuration (each recipe adds one step), then one benchmark run that measures FP32 and every INT8 model
# side by side, then scripts/fully_8bit_table.py.
set -u
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=out/f8
mkdir -p "$OUT"
ROWS="reference_kl reference_int8_attention reference_int8_cache reference_integer_softmax reference_fully_8bit"
for r in $ROWS; do
  echo "== $r"
  $BIN/inc-mt tune "recipes/$r.yaml" --set "outputs.dir=../$OUT/$r" --set outputs.overwrite=replace
  echo "exit $?"
done
# the FP32 reference with the same decode-loop passes the tuned models carry (token-identical), so that
# "best FP32" is the fastest FP32 graph this package can produce
rm -rf "$OUT/fp32_passes"; $BIN/inc-mt optimize inc_transformer_mt/reference --out "$OUT/fp32_passes"
models="fp32=inc_transformer_mt/reference fp32_passes=$OUT/fp32_passes"
for r in $ROWS; do models="$models $r=$OUT/$r"; done
# shellcheck disable=SC2086
$BIN/inc-mt benchmark $models --limit 300 --reps 3 --runtimes itex,stock --streams 2 --batch-sentences 8 \
  --latency-sentences 0 --out "$OUT/bench" --no-plot
$BIN/python scripts/fully_8bit_table.py "$OUT"
