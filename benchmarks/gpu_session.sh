#!/usr/bin/env bash
# Every CUDA test and every GPU measurement (issues 17 and 26) in one run on a GPU machine, in under 8 minutes
# on one H200; each part has its own time limit and a failed part does not stop the others.
#
#   bash benchmarks/gpu_prepare.sh                       # once, on the development machine
#   device run: command "bash benchmarks/gpu_session.sh", carry [".whl", ".gpu_data"], timeout_s 560
#
# SMOKE=1 runs the same parts at toy sizes on the CPU, to check the script itself without a GPU.
#
# Writes under $OUT (default runs/gpu_session): one log per part, gpu_throughput.json and .md (the
# figures of docs/figures/gpu_throughput.json and docs/benchmarks.md), ssl_gain.md (TRS on the
# GPU data path against the CPU path, and TRS with MultiAugs' recipe, 1,000 iterations, seeds 0-2) and
# summary.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu_session}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 ZENML_ANALYTICS_OPT_IN=false MLFLOW_ENABLE_TELEMETRY=false
PY="${PYTHON:-python3}"
if [ "${SMOKE:-0}" != 1 ] && compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "wheel install failed" | tee "$OUT/summary.txt"; exit 1; }
    export PYTHONPATH="/tmp/site"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TRS_POSE_SHARED="${TRS_POSE_SHARED:-$PWD/.gpu_data}"  # the tests' coco-mini fixture reads it
COCO="$TRS_POSE_SHARED/data/coco-mini"
started=$(date +%s)
if [ "${SMOKE:-0}" = 1 ]; then
    DEVICE=cpu
    THROUGHPUT=(--backbones resnet10t --batch 2 --input 64x48 --warmup 1 --iters 1 --workers 0 --peak-size 64
        --set model.deconv_channels=16 --set model.mfl_channels=8)
    SSL=(--iterations 4 --images 10 --val-images 3 --image-size 96x128 --input 64x48 --batch 2 --unlabeled-batch 2
        --labeled-fraction 0.3 --holdout 2 --seeds 0 --jobs 2 --workers 0 --backbone resnet10t)
else
    DEVICE=cuda
    THROUGHPUT=(--backbones resnet50,hrnet_w32 --batch 64 --input 256x192 --warmup 3 --iters 8
        --compile off,on --compile-backbones resnet50 --compile-methods trs)
    SSL=(--iterations 1000 --seeds 0,1,2 --jobs 9 --workers 1)
fi

part() {  # part NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, note the outcome
    local name=$1 limit=$2 begin=$(date +%s) rc
    shift 2
    echo "== $name (limit ${limit}s)"
    timeout --signal=INT --kill-after=15 "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    echo "$name: exit $rc after $(($(date +%s) - begin))s" | tee -a "$OUT/summary.txt"
    tail -n 25 "$OUT/$name.log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null; nproc; "$PY" -c \
    "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.is_available())"; } \
    >"$OUT/device.txt" 2>&1
cat "$OUT/device.txt"

# 1. same learning: 1,000 TRS iterations on the GPU data path against the CPU path, same recipe and
#    seeds, and the new recipe (issue 26) beside them; in the background, beside the tests (the
#    throughput figures below run alone)
work=$(mktemp -d)
part ssl_gain 320 "$PY" benchmarks/ssl_gain.py --work-dir "$work/ssl_gain" --device "$DEVICE" "${SSL[@]}" \
    --variants trs,trs_gpu_data,trs_multiaug --markdown-out "$OUT/ssl_gain.md" &
ssl_pid=$!

# 2. the tests that skip without CUDA, and the GPU data path's tests on this machine's torch
part cuda_tests 150 "$PY" -m pytest -q -rs -p no:cacheprovider --continue-on-collection-errors \
    -k "cuda or inductor or device_pipeline or geometry" tests/test_device_views.py tests/test_device_pipeline.py \
    tests/test_compile.py tests/test_trainer.py tests/test_evaluate_cli.py
wait "$ssl_pid"
cp "$work/ssl_gain/results.json" "$OUT/ssl_gain_results.json" 2>/dev/null

# 3. throughput, alone on the machine: 2 backbones x 3 methods (supervised, trs, trs_multiaug) x 3
#    feeds eager, then resnet50 TRS
#    compiled; one process, one JSON (rewritten after every run, so a timeout keeps what was measured)
part throughput 220 "$PY" benchmarks/train_throughput.py --device "$DEVICE" "${THROUGHPUT[@]}" --rounds 1 \
    --coco-root "$COCO" --json-out "$OUT/gpu_throughput.json" --table-out "$OUT/gpu_throughput.md"

echo "total: $(($(date +%s) - started))s" | tee -a "$OUT/summary.txt"
! grep -q "exit [1-9]" "$OUT/summary.txt"
