#!/usr/bin/env bash
# The GPU checks and benchmarks, in one pass, on a machine with one NVIDIA GPU and PyTorch:
#
#   OUT=/tmp/gpu-out bash benchmarks/gpu_run.sh
#
# Runs from the repository root with the package on PYTHONPATH (no install needed). Each step
# has its own time limit and a failed step does not stop the next; SKIP="name …" leaves steps out. Everything lands in $OUT:
# log.txt, pytest.txt, the dated reports of `dlhpc bench train` and benchmarks/gpu_sweep.py,
# the GEMM peak and the `dlhpc plan` projection (calibrated on this machine's CPU) as JSON.
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$ROOT/src:$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PY:-python3}
cd "$ROOT"
exec > >(tee -a "$OUT/log.txt") 2>&1

step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  case " ${SKIP:-} " in *" $name "*) echo "=== $name: skipped"; return ;; esac
  echo "=== $(date +%T) $name"
  local t0=$SECONDS
  timeout "$limit" "$@"
  echo "=== $name: exit $? after $((SECONDS - t0)) s"
}

step env 30 bash -c "nvidia-smi -L; $PY -c 'import torch, sys; print(sys.version.split()[0], \
torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0)); \
print(\"cpus\", len(__import__(\"os\").sched_getaffinity(0)))'"
step peak 60 bash -c "$PY -m dlhpc bench peak --device cuda --json | tee $OUT/peak.json"
step data 60 "$PY" benchmarks/digits_augmented.py /tmp/digits30k.npz --n 30000
step pytest 150 "$PY" -m pytest -q -p no:cacheprovider -o addopts="-ra" tests/test_cuda.py \
  --junitxml="$OUT/pytest.xml"
step launcher-1gpu 60 "$PY" -m dlhpc train mlp --data digits --nproc 1 --max-restarts 1 \
  --device cuda --epochs 2 --out /tmp/launch-run --quiet --json
step two-ranks-one-gpu 60 "$PY" -m dlhpc train mlp --data digits --nproc 2 --device cuda \
  --epochs 1 --out /tmp/two-run --quiet  # expected: refused in one line, exit 2
step bench-train 150 "$PY" -m dlhpc bench train --device cuda --data /tmp/digits30k.npz \
  --repeats 1 --out "$OUT"
step corpus 60 "$PY" -m dlhpc.bench.text_corpus /tmp/stdlib-docs
step sweep 200 "$PY" benchmarks/gpu_sweep.py --images /tmp/digits30k.npz --text /tmp/stdlib-docs \
  --out "$OUT" ${SWEEP_FLAGS:-}
step plan-from-cpu 60 env CUDA_VISIBLE_DEVICES= "$PY" -m dlhpc plan cnn --data /tmp/digits30k.npz \
  --epochs 3
echo "=== done"
