#!/usr/bin/env bash
# Tiny T5 NLI consistency judge on synthesised domain NLI pairs (TRUE-style), CPU-sized.
#   experiments/nli_consistency/run.sh [OUT]        (default OUT=runs/nli_consistency)
# Steps (each skipped or resumed on a rerun): python-stdlib pack -> 2k SentencePiece vocab ->
# synthesised NLI splits (adversarial to word overlap) -> train the judge -> ROC AUC / accuracy /
# calibration on the held-out synthesised test split and on the two hand-written claim sets in
# vertjax/resources/demo, beside word overlap. MODE=classifier (default: T5 encoder + alignment head,
# runs/nli_classifier.gin) or MODE=seq2seq (TRUE's text-to-text labels, runs/nli.gin).
# Sizes are env-overridable: STEPS, BATCH, PREMISE_SENTENCES, INIT (a pretrained T5 run dir).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/nli_consistency}
MODE=${MODE:-classifier}
STEPS=${STEPS:-400}
BATCH=${BATCH:-32}
PREMISE_SENTENCES=${PREMISE_SENTENCES:-2}
INIT=${INIT:-None}
VJ=${VERTJAX:-.venv/bin/vertjax}
mkdir -p "$OUT"

[ -f "$OUT/pack/manifest.json" ] || "$VJ" data build python-stdlib --out "$OUT/pack"
[ -f "$OUT/vocab/vocab.json" ] || "$VJ" vocab --input "$OUT/pack/train.jsonl" --out "$OUT/vocab" \
  --vocab_size 2000 --max_sentences 40000
[ -f "$OUT/data/test.jsonl" ] || "$VJ" consistency train-data --passages "$OUT/pack" \
  --out "$OUT/data" --premise_sentences "$PREMISE_SENTENCES" --per_passage 2 --seed 0

init=()
[ "$INIT" != None ] && init=(--gin.INITIAL_CHECKPOINT_PATH="$INIT")
start=$(date +%s)
if [ "$MODE" = classifier ]; then
  "$VJ" train --gin_file=models/t5_1_1/tiny.gin --gin_file=runs/nli_classifier.gin --no_progress \
    --gin.MODEL_DIR="$OUT/model_$MODE" --gin.VOCAB="$OUT/vocab" --gin.TRAIN_STEPS="$STEPS" \
    --gin.BATCH_SIZE="$BATCH" --gin.NLI_FILES="['$OUT/data/train.jsonl']" "${init[@]}"
else
  "$VJ" train --gin_file=models/t5_1_1/tiny.gin --gin_file=runs/nli.gin --no_progress \
    --gin.MODEL_DIR="$OUT/model_$MODE" --gin.VOCAB="$OUT/vocab" --gin.TRAIN_STEPS="$STEPS" \
    --gin.BATCH_SIZE="$BATCH" --gin.TASK_FEATURE_LENGTHS="{'inputs': 160, 'targets': 8}" \
    --gin.TRAIN_FILES="{'train': '$OUT/data/train.jsonl', 'validation': '$OUT/data/validation.jsonl'}" \
    "${init[@]}"
fi
echo "train wall seconds: $(( $(date +%s) - start ))" | tee "$OUT/train_seconds_$MODE.txt"

for name in synth_test domain_claims heldout_claims; do
  case $name in
    synth_test) pairs="$OUT/data/test.jsonl" ;;
    domain_claims) pairs=vertjax/resources/demo/nli_domain_claims.jsonl ;;
    heldout_claims) pairs=vertjax/resources/demo/nli_claims_heldout.jsonl ;;
  esac
  "$VJ" eval consistency --checkpoint "$OUT/model_$MODE" --vocab "$OUT/vocab" --pairs "$pairs" \
    --out "$OUT/eval_${MODE}_$name" --max_premise_tokens 120 --window_stride 60
done
