#!/usr/bin/env bash
# The SQLite manual as a second domain (issue 14): fetch the Debian package, build the pack and a BM25
# index, and score retrieval on the hand-written questions. WORK=/tmp/sqlite_own_corpus by default.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="${WORK:-/tmp/sqlite_own_corpus}"
VERTJAX="${VERTJAX:-vertjax}"
mkdir -p "$WORK"
if [ ! -d "$WORK/deb/usr/share/doc/sqlite3" ]; then
  (cd "$WORK" && apt-get download sqlite3-doc && dpkg-deb -x sqlite3-doc_*.deb deb)
fi
"$VERTJAX" data build sqlite3-doc --source "$WORK/deb" --out "$WORK/pack"
"$VERTJAX" index build --passages "$WORK/pack" --out "$WORK/index" --bm25 --no_progress
"$VERTJAX" eval retrieval --questions "$HERE/questions.jsonl" --index "$WORK/index" \
  --retrievers bm25 --out "$WORK/eval"
# The refusal floors: the domain classifier (against the general WordNet pack) calibrated on the index,
# then the out-of-the-box assistant on the 46 in-domain + 24 out-of-domain questions.
"$VERTJAX" ood train --pack "$WORK/pack" --index "$WORK/index" --out "$WORK/ood"
"${PYTHON:-python}" "$HERE/refusal_eval.py" --index "$WORK/index" --ood_dir "$WORK/ood"
