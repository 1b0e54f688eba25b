#!/usr/bin/env bash
# GPU smoke check, no network needed: sampling, scoring and step-DPO training on a randomly
# initialised Llama-architecture model in bf16, printing throughput and peak GPU memory.
# Usage: scripts/gpu_check.sh [--hidden 1024 --layers 16 --problems 256]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export SPPD_PROGRESS=${SPPD_PROGRESS:-1}
"$PY" benchmarks/gpu_check.py "$@"
