#!/usr/bin/env bash
# GTR vs DPR vs BM25 vs hybrid on the embedded python-stdlib pack, and GTR at two sizes (tiny scale).
# Usage: experiments/gtr_vs_dpr/run.sh [OUT]   (from the repository root; OUT=runs/gtr_vs_dpr)
# Every step resumes or skips when its output exists, so a rerun continues an interrupted run.
set -euo pipefail
OUT=${1:-runs/gtr_vs_dpr}
STEPS=${STEPS:-150}
BATCH=${BATCH:-32}
VJ=${VJ:-vertjax}
HERE=$(dirname "$0")
mkdir -p "$OUT"

[ -f "$OUT/pack/manifest.json" ] || $VJ data build python-stdlib --out "$OUT/pack"
[ -f "$OUT/vocab/spm.model" ] || $VJ vocab --input "$OUT/pack/train.jsonl" --out "$OUT/vocab" \
  --vocab_size 2000 --seed 0
# Labelled training pairs: template Self-QA over the TRAIN split only.
$VJ synth self-qa --passages "$OUT/pack/train.jsonl" --out "$OUT/selfqa_train" --backend template
# Held-out questions: template Self-QA over the validation + test splits (never trained on).
for split in validation test; do
  $VJ synth self-qa --passages "$OUT/pack/$split.jsonl" --out "$OUT/selfqa_$split" --backend template
done
cat "$OUT/selfqa_validation/questions.jsonl" "$OUT/selfqa_test/questions.jsonl" > "$OUT/heldout.jsonl"

train() {  # name, model gin, shared
  $VJ train --gin_file="$2" --gin_file=runs/retriever.gin --no_progress \
    --gin.MODEL_DIR="$OUT/$1" --gin.PASSAGES="$OUT/pack" --gin.VOCAB="$OUT/vocab" \
    --gin.RETRIEVER_SHARED="$3" --gin.TRAIN_STEPS="$STEPS" --gin.BATCH_SIZE="$BATCH" \
    --gin.WARMUP_STEPS=15 --gin.PEAK_LEARNING_RATE=0.002 --gin.CHECKPOINT_PERIOD="$STEPS" \
    --gin.QUESTION_LENGTH=32 --gin.PASSAGE_LENGTH=96 \
    --gin.LABELLED_PAIRS="['$OUT/selfqa_train/questions.jsonl']" \
    --gin.HELD_OUT="['$OUT/heldout.jsonl']"
  $VJ index build --passages "$OUT/pack" --retriever "$OUT/$1" --vocab "$OUT/vocab" \
    --out "$OUT/index_$1" --method brute --bm25 --passage_length 96 --question_length 32 \
    --no_progress
}
train dpr_tiny models/t5_1_1/tiny.gin False
train gtr_tiny models/t5_1_1/tiny.gin True
train gtr_mini "$HERE/mini.gin" True

$VJ eval retrieval --questions "$OUT/heldout.jsonl" --out "$OUT/eval" \
  --index "DPR-tiny=$OUT/index_dpr_tiny" --index "GTR-tiny=$OUT/index_gtr_tiny" \
  --index "GTR-mini=$OUT/index_gtr_mini" --no_verify
