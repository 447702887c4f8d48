#!/usr/bin/env bash
# Issue 8's multi-GPU check: the tiny quickstart (its SFT and GRPO stages, 32 prompts a step) with runtime=ray and
# learner.backend=deepspeed, on 1 GPU and on N GPUs of one host (colocated: each GPU one learner rank
# plus its rollout engine). Prints the mean RL step time of each run and a Markdown row for
# docs/BENCHMARKS.md. Held-out accuracy before and after is in each run's summary line.
#
# Needs: a machine with >= N GPUs, a Python with a CUDA torch, ray==2.60.0 and deepspeed==0.19.8 and
# rlkit installed (PY=python3 to use another interpreter than .venv's; on the lent GPU machines carry
# the wheels and install them first). N=1 runs the one-GPU half only. Usage:
#   bash scripts/bench_multi_gpu.sh [N=2] [extra overrides...]
set -euo pipefail
cd "$(dirname "$0")/.."
GPUS=${1:-2}; shift || true
PY=${PY:-.venv/bin/python}
RLKIT="$PY -m rlkit.cli"
OUT=${OUT:-runs/bench-multi-gpu-$(date +%Y%m%d-%H%M%S)}
COMMON=(runtime=ray learner.backend=deepspeed device=cuda threads=4 rl.batch_size=32 checkpoint.every=1000 "$@")
have=$(nvidia-smi -L 2>/dev/null | wc -l)
[ "$have" -ge "$GPUS" ] || { echo "bench_multi_gpu: needs $GPUS GPUs, nvidia-smi lists $have" >&2; exit 2; }

mean_rl_step() {  # mean time/step of the RL steps after the first two (warm-up)
  $PY - "$1/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
steps = [r["time/step"] for r in rows if r.get("stage") == "rl"][2:]
print(f"{sum(steps) / len(steps):.3f}")
PY
}

for n in $(printf '%s\n' 1 "$GPUS" | sort -un); do
  echo "== $n GPU(s)"
  $RLKIT run recipes/quickstart.yaml "${COMMON[@]}" ray.train_gpus="$n" -o "$OUT/gpus-$n"
done
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo
echo "| machine | command | GPUs | mean RL step (s) |"
echo "| --- | --- | --- | --- |"
for n in $(printf '%s\n' 1 "$GPUS" | sort -un); do
  echo "| $gpu | \`bash scripts/bench_multi_gpu.sh $GPUS\` | $n | $(mean_rl_step "$OUT/gpus-$n") |"
done
