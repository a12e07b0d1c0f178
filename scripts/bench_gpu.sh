#!/usr/bin/env bash
# GPU figures of docs/benchmarks.md, in one run on a CUDA machine (each step under its own time limit):
#   0. tests/test_cuda.py (the CUDA-graph training step against the eager one);
#   1. finetune (default auto, bundled source), extract-features and predict on the slme development set
#      with --device cuda: the whole transfer path on the GPU, test MAE comparable with the CPU tables;
#   2. scripts/bench_training.py --device cuda: project loop vs naive loop, time-to-accuracy;
#   3. the bundled formation-energy recipe with a longer schedule (--epochs 400) on the GPU.
# Usage: [SKIP="step ..."] bash scripts/bench_gpu.sh [OUT_DIR] [NAIVE_BUDGET_S]   (needs a CUDA GPU and ../shared/data)
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-runs/gpu}"
budget="${2:-60}"
shared="${ELEMTL_SHARED:-$here/../shared}/data"
source_csv="$shared/source/matbench_mp_e_form.csv.gz"
slme="$shared/targets/jarvis_tl/slme"
[ -f "$source_csv" ] || { echo "skip: $source_csv not found (needs ../shared/data)"; exit 0; }
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || { echo "skip: no CUDA GPU"; exit 0; }
elemtl=(python -m elemnet_tl.cli)  # also where the package is on PYTHONPATH, not installed
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python -c "import torch; print('torch', torch.__version__)" | tee -a "$out/gpu.txt"

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to OUT/NAME.log, print wall time
    local name=$1 limit=$2; shift 2
    [[ " ${SKIP:-} " == *" $name "* ]] && return
    local t0=$SECONDS
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    echo "$name: exit $? in $((SECONDS - t0)) s" | tee -a "$out/steps.txt"
}

step cuda_tests 60 python -m pytest -q "$here/tests/test_cuda.py" -p no:cacheprovider
step finetune 90 "${elemtl[@]}" finetune "$slme/train.csv.gz" -o "$out/slme_auto" --test "$slme/test.csv.gz" --device cuda
step features 60 "${elemtl[@]}" extract-features "$slme/train.csv.gz" -o "$out/slme_features" --test "$slme/test.csv.gz" \
    --regressor ridge --device cuda
step predict 30 "${elemtl[@]}" predict "$slme/test.csv.gz" --model "$out/slme_auto" -o "$out/slme_pred.csv" --device cuda
step bench_training 200 python "$here/scripts/bench_training.py" --device cuda --budget "$budget" \
    --batches 32,512,2048,8192 --out "$out/bench_training_gpu.json"
step pretrain400 170 "${elemtl[@]}" pretrain "$source_csv" -o "$out/pretrain400" --test-fraction 0.1 --seed 0 --device cuda \
    --epochs 400
