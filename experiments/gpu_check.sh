#!/usr/bin/env bash
# The GPU check of issue 18, item 5, as one prepared script: the CUDA tests, the CUDA-vs-CPU
# agreement and GPU timings (experiments/cuda_check.py), and the full benchmark on the GPU in
# fp32 and under bfloat16 autocast. Every output goes to $OUT (default gpu_check/), one file
# per part, so that what finished comes back even if a later part runs out of time.
#
#     OUT=gpu_check bash experiments/gpu_check.sh        # about 6 minutes on an H100
#
# It runs from the repository root with the machine's own python3 and torch (a CUDA build;
# the project's other dependencies, numpy, scipy, h5py and tqdm, must be importable). It does
# not install the project: it puts the checkout on PYTHONPATH, so a CUDA machine whose torch
# differs from the CPU pin (torch==2.13.0) runs it as it is.
set -uo pipefail
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
part() {  # part NAME SECONDS COMMAND...: run one part with a time limit, log it, go on
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit} s)"
    local t0=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
    local rc=$?
    echo "$name: exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
    tail -n 25 "$OUT/$name.txt"
}
"$PY" -c 'import torch; print(torch.__version__, torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA")' \
    | tee "$OUT/summary.txt"
part cuda_tests 240 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests
part cuda_check 180 "$PY" experiments/cuda_check.py --out "$OUT/cuda_check.json"
part bench_fp32 300 "$PY" -m bioglom.bench --preset full --device cuda --nproc 1 \
    --out "$OUT/bench_fp32.json"
part bench_bf16 300 "$PY" -m bioglom.bench --preset full --device cuda --nproc 1 --bf16 \
    --out "$OUT/bench_bf16.json"
