#!/usr/bin/env bash
# Lin et al.'s route (issue 13, item 4), measured against the post-training route: trains the Integer Transformer
# if work/integer_transformer is missing (`make integer-transformer`, about 65 minutes on 2 cores, resumable),
# tunes it (INT8 MatMuls only, and fully 8-bit), tunes the reference's two rows if out/f8 lacks them, then
# benchmarks both FP32 models and the four INT8 models side by side in one run and prints their rows
# (scripts/fully_8bit_table.py). About 35 minutes after training.
set -u
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=out/f8
mkdir -p "$OUT"
test -f work/integer_transformer/model.json || make integer-transformer || exit 1
for r in reference_kl reference_fully_8bit; do   # the post-training rows (skipped when out/f8 has them)
  test -f "$OUT/$r/report.json" && continue
  $BIN/inc-mt tune "recipes/$r.yaml" --set "outputs.dir=../$OUT/$r" --set outputs.overwrite=replace
done
# the Integer Transformer: INT8 MatMuls only (its recipe with the default's one rule), then fully 8-bit
$BIN/inc-mt tune recipes/integer_transformer_fully_8bit.yaml --set 'quantization.rules=[{op_type: MatMul, dtype: int8}]' \
  --set "outputs.dir=../$OUT/integer_transformer_kl" --set outputs.overwrite=replace
$BIN/inc-mt tune recipes/integer_transformer_fully_8bit.yaml \
  --set "outputs.dir=../$OUT/integer_transformer_fully_8bit" --set outputs.overwrite=replace
# each FP32 model with the decode-loop passes the tuned models carry (token-identical): the fastest FP32 graphs
for m in fp32_passes:inc_transformer_mt/reference it_fp32_passes:work/integer_transformer; do
  rm -rf "$OUT/${m%%:*}"; $BIN/inc-mt optimize "${m#*:}" --out "$OUT/${m%%:*}"
done
$BIN/inc-mt benchmark fp32_passes="$OUT/fp32_passes" it_fp32_passes="$OUT/it_fp32_passes" \
  reference_kl="$OUT/reference_kl" reference_fully_8bit="$OUT/reference_fully_8bit" \
  integer_transformer_kl="$OUT/integer_transformer_kl" integer_transformer_fully_8bit="$OUT/integer_transformer_fully_8bit" \
  --limit 300 --reps 3 --runtimes itex --streams 2 --batch-sentences 8 --latency-sentences 0 \
  --out "$OUT/bench_integer_transformer" --no-plot
$BIN/python scripts/fully_8bit_table.py "$OUT" bench_integer_transformer \
  reference_kl,reference_fully_8bit,integer_transformer_kl,integer_transformer_fully_8bit
