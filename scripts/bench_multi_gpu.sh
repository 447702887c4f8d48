#!/usr/bin/env bash
# Issue 8's multi-GPU check: the tiny quickstart twin (model.tiny_size=small) with runtime=ray and
# learner.backend=deepspeed, on 1 GPU and on N GPUs of one host (colocated: each GPU one learner rank
# plus its rollout engine). Prints the mean RL step time of each run and a Markdown row for
# docs/BENCHMARKS.md.
#
# Needs: a machine with >= N GPUs, .venv with a CUDA torch, ray[default]==2.60.0 and deepspeed==0.19.8
# (bring the wheels over if the machine has no registry). Usage:
#   bash scripts/bench_multi_gpu.sh [N=2] [extra overrides...]
set -euo pipefail
cd "$(dirname "$0")/.."
GPUS=${1:-2}; shift || true
RLKIT=".venv/bin/python -m rlkit.cli"
OUT=${OUT:-runs/bench-multi-gpu-$(date +%Y%m%d-%H%M%S)}
COMMON=(runtime=ray learner.backend=deepspeed device=cuda model.tiny_size=small threads=4
        sft.steps=100 rl.steps=20 rl.batch_size=32 checkpoint.every=1000 "$@")
have=$(nvidia-smi -L 2>/dev/null | wc -l)
[ "$have" -ge "$GPUS" ] || { echo "bench_multi_gpu: needs $GPUS GPUs, nvidia-smi lists $have" >&2; exit 2; }

mean_rl_step() {  # mean time/step of the RL steps after the first two (warm-up)
  .venv/bin/python - "$1/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
steps = [r["time/step"] for r in rows if r.get("stage") == "rl"][2:]
print(f"{sum(steps) / len(steps):.3f}")
PY
}

for n in 1 "$GPUS"; do
  echo "== $n GPU(s)"
  $RLKIT run recipes/quickstart.yaml "${COMMON[@]}" ray.train_gpus="$n" -o "$OUT/gpus-$n"
done
one=$(mean_rl_step "$OUT/gpus-1"); many=$(mean_rl_step "$OUT/gpus-$GPUS")
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo
echo "| machine | command | GPUs | mean RL step (s) |"
echo "| --- | --- | --- | --- |"
echo "| $gpu | \`bash scripts/bench_multi_gpu.sh $GPUS\` | 1 | $one |"
echo "| $gpu | \`bash scripts/bench_multi_gpu.sh $GPUS\` | $GPUS | $many |"
