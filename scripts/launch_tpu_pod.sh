#!/usr/bin/env bash
# TPU pod training: the same `vertjax train` command on every worker of a TPU VM slice.
#
#   scripts/launch_tpu_pod.sh --tpu my-v4-32 --zone us-central2-b [--project P] [--setup] -- \
#     --gin_file=models/t5_1_1/large.gin --gin_file=runs/pretrain.gin \
#     --gin.MODEL_DIR=gs://my-bucket/runs/large --gin.TRAIN_STEPS=100000 ...
#
# runs, through `gcloud compute tpus tpu-vm ssh --worker=all`, on each worker:
#   cd REPO_DIR && .venv/bin/vertjax train --multihost <your flags>
# `--multihost` makes jax.distributed discover the pod itself (no coordinator address needed).
# `--setup` first clones/updates the repository on every worker (`--repo_url`, `--branch`) and
# installs vertjax with jax[tpu] in REPO_DIR/.venv. MODEL_DIR should be a gs:// bucket that every
# worker can write: all workers write one checkpoint together. `--dry_run` prints the commands.
set -euo pipefail

usage() {
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  echo "options: --tpu NAME --zone ZONE [--project P] [--repo_dir DIR (default ~/vertjax)]"
  echo "         [--setup --repo_url URL [--branch main]] [--dry_run]"
  exit 2
}

tpu="" zone="" project="" repo_dir="~/vertjax" setup=0 repo_url="" branch="main" dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tpu) tpu="$2"; shift 2 ;;
    --zone) zone="$2"; shift 2 ;;
    --project) project="$2"; shift 2 ;;
    --repo_dir) repo_dir="$2"; shift 2 ;;
    --setup) setup=1; shift ;;
    --repo_url) repo_url="$2"; shift 2 ;;
    --branch) branch="$2"; shift 2 ;;
    --dry_run) dry_run=1; shift ;;
    --) shift; break ;;
    -h|--help) usage ;;
    *) echo "launch_tpu_pod.sh: unknown option $1 (train flags go after --)" >&2; usage ;;
  esac
done
[[ -n "$tpu" && -n "$zone" ]] || { echo "launch_tpu_pod.sh: need --tpu and --zone" >&2; usage; }
[[ $# -gt 0 ]] || { echo "launch_tpu_pod.sh: no vertjax train flags after --" >&2; usage; }
if [[ $setup -eq 1 && -z "$repo_url" ]]; then
  echo "launch_tpu_pod.sh: --setup needs --repo_url" >&2
  usage
fi

on_all_workers() {
  local cmd=(gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command "$1")
  [[ -n "$project" ]] && cmd+=(--project "$project")
  if [[ $dry_run -eq 1 ]]; then
    printf '%q ' "${cmd[@]}"
    echo
  else
    "${cmd[@]}"
  fi
}

if [[ $setup -eq 1 ]]; then
  on_all_workers "set -e; if [ -d $repo_dir/.git ]; then git -C $repo_dir fetch -q origin \
&& git -C $repo_dir checkout -q $branch && git -C $repo_dir pull -q; \
else git clone -q -b $branch $(printf '%q' "$repo_url") $repo_dir; fi; cd $repo_dir; \
python3 -m venv .venv; .venv/bin/pip install -q -r requirements.txt -e .; \
.venv/bin/pip install -q 'jax[tpu]==$(sed -n 's/^jax\[cpu\]==//p' "$(dirname "$0")/../requirements.txt")'"
fi

train_flags="$(printf '%q ' "$@")"
train_flags="${train_flags% }"
on_all_workers "cd $repo_dir && .venv/bin/vertjax train --multihost --no_progress $train_flags"
