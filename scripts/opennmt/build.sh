#!/usr/bin/env bash
# Train a small Transformer on Multi30k En->De with OpenNMT-tf and export it with the toolkit's own export
# command, in a virtual environment of its own (OpenNMT-tf 2.32 needs TensorFlow < 2.14; the package runs on
# 2.15). Resumable: re-running continues training from the last checkpoint; each stage is skipped when done.
#
#   scripts/opennmt/build.sh [WORKDIR]        (default work/opennmt; STEPS=4000 TIME_BUDGET_MIN=0 to cap time)
#
# Produces WORKDIR/export (a TF2 SavedModel, `serving_default`: tokens+length -> tokens), WORKDIR/sp.model
# and WORKDIR/vocab.txt. Then: `inc-mt import WORKDIR/export --out DIR --tokenizer opennmt:...` (docs/own-model.md).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WORK="$(mkdir -p "${1:-$ROOT/work/opennmt}" && cd "${1:-$ROOT/work/opennmt}" && pwd)"
DATA="${INC_MT_MULTI30K:-$ROOT/../shared/data/multi30k}"
VENV="${ONMT_VENV:-$ROOT/.venv-opennmt}"
STEPS="${STEPS:-4000}"
TIME_BUDGET_MIN="${TIME_BUDGET_MIN:-0}"
PY="${PYTHON:-python3.11}"; command -v "$PY" >/dev/null || PY=python3

if [ ! -x "$VENV/bin/onmt-main" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "tensorflow==2.13.1" "tensorflow-addons==0.21.0" "opennmt-tf==2.32.0" \
      "pyonmttok>=1.37,<2" "ctranslate2>=3,<4" "sentencepiece>=0.1.99"
fi
export TF_CPP_MIN_LOG_LEVEL=2

for split in train val test_2016_flickr; do
  for lang in en de; do
    [ -s "$WORK/$split.$lang" ] || gzip -dc "$DATA/$split.$lang.gz" > "$WORK/$split.$lang"
  done
done

# The toolkit's tokenizer: OpenNMT Tokenizer (pyonmttok) over a joint SentencePiece model, and
# OpenNMT-tf's own vocabulary builder (adds <blank>, <s>, </s> in front).
if [ ! -s "$WORK/vocab.txt" ]; then
  "$VENV/bin/python" - "$WORK" <<'PY'
import sys, pyonmttok
work = sys.argv[1]
learner = pyonmttok.SentencePieceLearner(vocab_size=8000, character_coverage=1.0)
learner.ingest_file(f"{work}/train.en")
learner.ingest_file(f"{work}/train.de")
learner.learn(f"{work}/sp.model")
PY
  "$VENV/bin/onmt-build-vocab" --tokenizer_config "{\"mode\": \"none\", \"sp_model_path\": \"$WORK/sp.model\"}" \
      --size 8000 --save_vocab "$WORK/vocab.txt" "$WORK/train.en" "$WORK/train.de"
fi

sed -e "s|@WORK@|$WORK|g" -e "s|@STEPS@|$STEPS|g" "$HERE/config.yml.in" > "$WORK/config.yml"

if [ ! -s "$WORK/export/saved_model.pb" ]; then
  if [ "$TIME_BUDGET_MIN" -gt 0 ]; then
    timeout --signal=INT "$((TIME_BUDGET_MIN * 60))" \
      "$VENV/bin/onmt-main" --model "$HERE/model.py" --config "$WORK/config.yml" --seed 1234 train \
      || echo "training stopped by the time budget; re-run to continue"
  else
    "$VENV/bin/onmt-main" --model "$HERE/model.py" --config "$WORK/config.yml" --seed 1234 train
  fi
  "$VENV/bin/onmt-main" --model "$HERE/model.py" --config "$WORK/config.yml" average_checkpoints \
      --output_dir "$WORK/run/avg" --max_count 5
  "$VENV/bin/onmt-main" --model "$HERE/model.py" --config "$WORK/config.yml" \
      --checkpoint_path "$WORK/run/avg" export --output_dir "$WORK/export.tmp" --format saved_model
  rm -rf "$WORK/export" && mv "$WORK/export.tmp" "$WORK/export"
fi
echo "exported: $WORK/export"
