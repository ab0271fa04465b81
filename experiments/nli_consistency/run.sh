#!/usr/bin/env bash
# Tiny T5 NLI consistency model on synthesised domain NLI pairs (TRUE-style), CPU-sized.
#   experiments/nli_consistency/run.sh [OUT]        (default OUT=runs/nli_consistency)
# Steps (each skipped or resumed on a rerun): python-stdlib pack -> 2k SentencePiece vocab ->
# synthesised NLI splits -> train tiny T5 (runs/nli.gin) -> ROC AUC / accuracy / calibration on the
# held-out synthesised test split and on tests/data/nli_domain_claims.jsonl, beside the lexical
# baseline. Sizes are env-overridable: STEPS, BATCH, INPUTS_LENGTH, PREMISE_SENTENCES.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/nli_consistency}
STEPS=${STEPS:-500}
BATCH=${BATCH:-16}
INPUTS_LENGTH=${INPUTS_LENGTH:-128}
PREMISE_SENTENCES=${PREMISE_SENTENCES:-2}
VJ=${VERTJAX:-.venv/bin/vertjax}
mkdir -p "$OUT"

[ -f "$OUT/pack/manifest.json" ] || "$VJ" data build python-stdlib --out "$OUT/pack"
[ -f "$OUT/vocab/vocab.json" ] || "$VJ" vocab --input "$OUT/pack/train.jsonl" --out "$OUT/vocab" \
  --vocab_size 2000 --max_sentences 40000
[ -f "$OUT/data/test.jsonl" ] || "$VJ" consistency train-data --passages "$OUT/pack" \
  --out "$OUT/data" --premise_sentences "$PREMISE_SENTENCES" --seed 0

start=$(date +%s)
"$VJ" train --gin_file=models/t5_1_1/tiny.gin --gin_file=runs/nli.gin --no_progress \
  --gin.MODEL_DIR="$OUT/model" --gin.VOCAB="$OUT/vocab" --gin.TRAIN_STEPS="$STEPS" \
  --gin.BATCH_SIZE="$BATCH" --gin.TASK_FEATURE_LENGTHS="{'inputs': $INPUTS_LENGTH, 'targets': 4}" \
  --gin.TRAIN_FILES="{'train': '$OUT/data/train.jsonl', 'validation': '$OUT/data/validation.jsonl'}"
echo "train wall seconds: $(( $(date +%s) - start ))" | tee "$OUT/train_seconds.txt"

for name in synth_test domain_claims; do
  pairs="$OUT/data/test.jsonl"
  [ "$name" = domain_claims ] && pairs=tests/data/nli_domain_claims.jsonl
  "$VJ" consistency eval --checkpoint "$OUT/model" --vocab "$OUT/vocab" --pairs "$pairs" \
    --out "$OUT/eval_$name" --max_premise_tokens 96 --window_stride 48
done
