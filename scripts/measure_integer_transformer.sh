#!/usr/bin/env bash
# Lin et al.'s route (issue 13, item 4), measured against the post-training route: trains the Integer Transformer
# if work/integer_transformer is missing (`make integer-transformer`, about 65 minutes on 2 cores, resumable),
# tunes it fully 8-bit, tunes the reference fully 8-bit if out/f8 lacks it, then benchmarks both FP32 models and
# both fully 8-bit models side by side in one run and prints their rows (scripts/fully_8bit_table.py).
set -u
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=out/f8
mkdir -p "$OUT"
test -f work/integer_transformer/model.json || make integer-transformer || exit 1
for r in integer_transformer_fully_8bit reference_fully_8bit; do
  test -f "$OUT/$r/report.json" && [ "$r" != integer_transformer_fully_8bit ] && continue
  echo "== $r"
  $BIN/inc-mt tune "recipes/$r.yaml" --set "outputs.dir=../$OUT/$r" --set outputs.overwrite=replace
  echo "exit $?"
done
# each FP32 model with the decode-loop passes the tuned models carry (token-identical): the fastest FP32 graphs
for m in fp32_passes:inc_transformer_mt/reference it_fp32_passes:work/integer_transformer; do
  rm -rf "$OUT/${m%%:*}"; $BIN/inc-mt optimize "${m#*:}" --out "$OUT/${m%%:*}"
done
$BIN/inc-mt benchmark fp32_passes="$OUT/fp32_passes" it_fp32_passes="$OUT/it_fp32_passes" \
  reference_fully_8bit="$OUT/reference_fully_8bit" integer_transformer_fully_8bit="$OUT/integer_transformer_fully_8bit" \
  --limit 300 --reps 3 --runtimes itex --streams 2 --batch-sentences 8 --latency-sentences 0 \
  --out "$OUT/bench_integer_transformer" --no-plot
$BIN/python scripts/fully_8bit_table.py "$OUT" bench_integer_transformer reference_fully_8bit,integer_transformer_fully_8bit
