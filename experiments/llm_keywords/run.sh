#!/usr/bin/env bash
# ChatDoctor's keyword step with a real local LLM vs lexical keywords vs none (issue 18.3), on the
# demo's 89 hand-written lay-language questions over a BM25 index of the python-stdlib pack.
# Needs `make llm`. WORK=/tmp/llm_keywords by default.
set -euo pipefail
WORK="${WORK:-/tmp/llm_keywords}"
VERTJAX="${VERTJAX:-vertjax}"
HERE="$(cd "$(dirname "$0")" && pwd)"
QUESTIONS="$HERE/../../vertjax/resources/demo/retrieval_lay_questions.jsonl"
PORT="${PORT:-18777}"
mkdir -p "$WORK"
[ -d "$WORK/pack" ] || "$VERTJAX" data build python-stdlib --out "$WORK/pack"
[ -d "$WORK/index/bm25" ] || "$VERTJAX" index build --passages "$WORK/pack" --out "$WORK/index" --bm25 --no_progress
"$VERTJAX" eval retrieval --questions "$QUESTIONS" --index "$WORK/index" --retrievers bm25 \
  --keywords lexical --out "$WORK/eval_lexical"
"$VERTJAX" llm serve --port "$PORT" > "$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do grep -q "model:" "$WORK/serve.log" && break; sleep 2; done
MODEL="$(sed -n 's/^model: *//p' "$WORK/serve.log")"
"$VERTJAX" eval retrieval --questions "$QUESTIONS" --index "$WORK/index" --retrievers bm25 \
  --keywords llm --keywords_base_url "http://127.0.0.1:$PORT/v1" --keywords_model "$MODEL" \
  --out "$WORK/eval_llm"
