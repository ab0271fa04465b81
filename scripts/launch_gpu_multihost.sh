#!/usr/bin/env bash
# Multi-host GPU training: one `vertjax train` process per host, joined by jax.distributed.
#
# Run the same command on every host (by hand, pdsh, or srun), changing only --host_id:
#
#   scripts/launch_gpu_multihost.sh --coordinator 10.0.0.1:1234 --num_hosts 2 --host_id 0 -- \
#     --gin_file=models/t5_1_1/base.gin --gin_file=runs/pretrain.gin \
#     --gin.MODEL_DIR=/shared/runs/base --gin.TRAIN_STEPS=100000 ...
#
# Inside a SLURM allocation (`srun --ntasks-per-node=1 scripts/launch_gpu_multihost.sh --slurm -- ...`)
# JAX reads the coordinator, process count and id from SLURM itself. `--local N` starts N processes
# on this machine with one fake CPU device each: a rehearsal of the same command without GPUs.
#
# MODEL_DIR must be storage every host sees (NFS, a bucket): all hosts write one checkpoint together.
# The gin files are the single-host ones; only MESH_SHAPE may need a change (see scripts/README.md).
set -euo pipefail

usage() {
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
  echo "options: --coordinator HOST:PORT --num_hosts N --host_id I | --slurm | --local N;"
  echo "         --vertjax PATH (default: .venv/bin/vertjax, else vertjax on PATH); --dry_run"
  exit 2
}

coordinator="" num_hosts="" host_id="" mode="explicit" local_n="" dry_run=0
repo="$(cd "$(dirname "$0")/.." && pwd)"
vertjax_bin="$repo/.venv/bin/vertjax"
[[ -x "$vertjax_bin" ]] || vertjax_bin="vertjax"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --coordinator) coordinator="$2"; shift 2 ;;
    --num_hosts) num_hosts="$2"; shift 2 ;;
    --host_id) host_id="$2"; shift 2 ;;
    --slurm) mode="slurm"; shift ;;
    --local) mode="local"; local_n="$2"; shift 2 ;;
    --vertjax) vertjax_bin="$2"; shift 2 ;;
    --dry_run) dry_run=1; shift ;;
    --) shift; break ;;
    -h|--help) usage ;;
    *) echo "launch_gpu_multihost.sh: unknown option $1 (train flags go after --)" >&2; usage ;;
  esac
done
[[ $# -gt 0 ]] || { echo "launch_gpu_multihost.sh: no vertjax train flags after --" >&2; usage; }

run() {
  if [[ $dry_run -eq 1 ]]; then
    printf '%q ' "$@"
    echo
  else
    "$@"
  fi
}

case "$mode" in
  explicit)
    if [[ -z "$coordinator" || -z "$num_hosts" || -z "$host_id" ]]; then
      echo "launch_gpu_multihost.sh: need --coordinator, --num_hosts and --host_id" >&2
      usage
    fi
    # One process drives all local GPUs; XLA's GPU flags that help large T5 steps.
    export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
    run "$vertjax_bin" train --coordinator_address "$coordinator" --num_processes "$num_hosts" \
      --process_id "$host_id" --no_progress "$@"
    ;;
  slurm)
    run "$vertjax_bin" train --multihost --no_progress "$@"
    ;;
  local)
    port="${PORT:-$((20000 + RANDOM % 20000))}"
    pids=()
    for ((i = 0; i < local_n; i++)); do
      JAX_PLATFORMS=cpu run "$vertjax_bin" train --coordinator_address "127.0.0.1:$port" \
        --num_processes "$local_n" --process_id "$i" --no_progress "$@" &
      pids+=("$!")
    done
    status=0
    for pid in "${pids[@]}"; do
      wait "$pid" || status=$?
    done
    exit "$status"
    ;;
esac
