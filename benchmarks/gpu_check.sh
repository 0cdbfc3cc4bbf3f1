#!/usr/bin/env bash
# One prepared check for a lent GPU (written for an H200; about 8 minutes there):
#   1. repro selftest on the GPU: every architecture family, GPU fp32 (TF32 off) vs CPU vs the
#      shipped fixtures, TF32 vs fp32 per family (max logit difference, argmax agreement; issue
#      17), and the synthetic end-to-end evaluation per protocol kind;
#   2. benchmarks/gpu_check.py: the thread loader (two run_job evaluations of 6 images in one
#      process beside the reference loop, then `repro eval` of two models in one command), then
#      per case upstream's loop (reference_predict) in fp32 and with PyTorch's default TF32, and
#      repro fp32 / tf32 / tf32-all, at real size under a 24 GiB allocator cap: MCIBI R-50 ADE20k
#      ms+flip 512x683, MCIBI++ ASPP R-101 Cityscapes ms+flip slide 1024x2048, MCIBI++ UPerNet
#      Swin-L ms+flip slide 640, MCIBI ViT-L ms+flip slide 512: s/img, ratios, argmax agreement
#      with the fp32 loop, max score difference, peak memory.
# Writes $OUT/selftest.json, $OUT/gpu_check.json and both logs ($OUT defaults to ./gpu_check_out).
#
# Python: $PYTHON (default python3). On the device machine python3 is already a virtual
# environment holding the CUDA build of torch, so it is used as it is; a plain system python gets
# a venv with --system-site-packages (so it sees that torch) in $GPU_CHECK_VENV. The repository
# runs from its folder (PYTHONPATH), nothing is installed into it. Packages the machine lacks
# (there: pydantic and its parts, platformdirs; typer 0.29 and rich for the CLI) travel as
# wheels in .whl/ and go into /tmp/repro-site. Prepare them once, on a machine with PyPI:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 platformdirs==4.14.8 \
#     rich==15.0.0 typer==0.29.2 annotated-doc==0.0.7 typing_extensions==4.16.0
# then run this script with .whl carried along (device tool: carry [".whl"]).
#
# Usage: benchmarks/gpu_check.sh            (on the GPU machine)
#        benchmarks/gpu_check.sh --tiny     (CPU, tiny sizes, one case: checks the script itself)
# Environment: GPU_CHECK_SKIP_SELFTEST=1 skips step 1; GPU_CHECK_ARGS replaces step 2's arguments.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export REPRO_HOME="${REPRO_HOME:-/tmp/repro-gpu-home}"
PY="${PYTHON:-python3}"

if [ "${1:-}" = "--tiny" ]; then
  DEVICE=cpu; SELFTEST_ARGS="--quick"; BENCH_ARGS="--tiny --cases ade20k --settings nchw tf32 tf32-all --e2e 2 --loader"
else
  DEVICE=cuda; SELFTEST_ARGS=""; BENCH_ARGS="--e2e 6 --loader"
fi
BENCH_ARGS="${GPU_CHECK_ARGS:-$BENCH_ARGS}"

# A venv only where python3 is not one already (a venv made from a venv would not see its torch).
if ! "$PY" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
  VENV="${GPU_CHECK_VENV:-/tmp/repro-gpu-venv}"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv --system-site-packages "$VENV" || exit 2
  PY="$VENV/bin/python"
fi
NEEDED='import torch, numpy, cv2, yaml, pydantic, platformdirs, filelock, pandas'
if ! "$PY" -c "$NEEDED" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/repro-site .whl/*.whl || exit 2
  export PYTHONPATH="/tmp/repro-site:$PYTHONPATH"
fi
if ! "$PY" -c "$NEEDED"; then
  echo "error: a package repro needs is missing for $PY; carry its wheel in .whl/ (see the top of this script)"
  exit 2
fi
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available() and torch.cuda.get_device_name(0))'
[ "$DEVICE" = cpu ] || nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

status=0
echo "== 1. repro selftest --device $DEVICE $SELFTEST_ARGS"
if [ -n "${GPU_CHECK_SKIP_SELFTEST:-}" ]; then
  echo "skipped (GPU_CHECK_SKIP_SELFTEST)"
elif "$PY" -c 'import repro.cli' 2>/dev/null; then
  timeout 180 "$PY" -m repro selftest --device "$DEVICE" $SELFTEST_ARGS 2>&1 | tee "$OUT/selftest.log" || status=1
else  # the CLI's own packages (typer, rich) are missing or too old: the same checks via the API
  timeout 180 "$PY" benchmarks/gpu_check.py --device "$DEVICE" --selftest-only 2>&1 | tee "$OUT/selftest.log" || status=1
fi
cp "$REPRO_HOME"/selftest/*.json "$OUT/selftest.json" 2>/dev/null || true

echo "== 2. thread loader, then Predictor vs reference_predict ($DEVICE; fp32, tf32, tf32-all)"
timeout 420 "$PY" benchmarks/gpu_check.py --device "$DEVICE" $BENCH_ARGS --json "$OUT/gpu_check.json" 2>&1 \
  | tee "$OUT/gpu_check.log" || status=1

echo "== done (status $status): $OUT/selftest.json $OUT/gpu_check.json"
exit $status
