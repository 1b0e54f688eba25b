#!/usr/bin/env bash
# GPU check, no network needed: the whole pipeline on a small random Qwen2-architecture model on one
# GPU in bf16 (benchmarks/gpu_check.py says what it runs), printing vLLM tree sampling vs plain
# prefix-cached generation, training tokens/s and peak GPU memory. Under 10 minutes on one GPU.
# Sampling uses vLLM when it is installed, else the HF engine; training runs on DeepSpeed ZeRO-2
# (configs/accelerate/zero2.yaml, one process) when DeepSpeed is installed, else on plain accelerate.
# Usage: scripts/gpu_check.sh [--hidden 512 --layers 8 --problems 128 --quick]
#        scripts/gpu_check.sh --cpu-smoke   # the same code at toy size on CPU, < 60 s, no GPU numbers
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export SPPD_PROGRESS=${SPPD_PROGRESS:-1}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
cpu_smoke=0
for arg in "$@"; do [ "$arg" = "--cpu-smoke" ] && cpu_smoke=1; done
if [ "$cpu_smoke" = 0 ] && "$PY" -c "import deepspeed" >/dev/null 2>&1; then
    echo "gpu_check: DeepSpeed found: training under accelerate launch with ZeRO-2"
    exec "$PY" -m accelerate.commands.launch --config_file src/sppd/configs/accelerate/zero2.yaml \
        --num_processes 1 benchmarks/gpu_check.py "$@"
fi
[ "$cpu_smoke" = 1 ] || echo "gpu_check: DeepSpeed not installed: training on plain accelerate (the DDP path)"
exec "$PY" benchmarks/gpu_check.py "$@"
