#!/usr/bin/env bash
# The GPU benchmark set in one go, for a lent GPU machine that has torch but not segkit's other dependencies and
# no network: installs the wheels in .whl/ (if any) and segkit into /tmp, then runs each benchmark under its own
# time limit, writing logs and JSON to $OUT (default ./bench-out). A stage that fails does not stop the others.
#
#     bash benchmarks/gpu_session.sh [stage ...]     # tests smoke predict predict-bn stages forward forward-compile
#                                                    # train train-profile train-compile train-ro inflate
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}

# A call carries at most 64 MiB of ignored files, so the wheels may come over several calls: each call installs
# the wheels it carried into /tmp/site, which outlives the call while the machine stays warm.
if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
if [ -d /tmp/site ]; then export PYTHONPATH=/tmp/site; fi
if ! $PY -c "import monai, segkit.pipelines" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade --target /tmp/segkit . || exit 1
    export PYTHONPATH=/tmp/segkit${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__, 'cuda', torch.version.cuda)"

stage() {  # stage NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    echo "=== $name ($(date +%T))"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 40 "$OUT/$name.log"
    echo "=== $name rc=$rc"
}

STAGES=${*:-smoke predict stages forward train train-compile}
for s in $STAGES; do
    case $s in
        tests) stage tests 240 $PY -m pytest -q -p no:cacheprovider tests/models/test_fast_instance_norm.py \
                   tests/models/test_space_to_depth.py tests/inference/test_cuda_graph.py ;;
        smoke) stage smoke 150 $PY benchmarks/predict_e2e.py --device cuda --size 160 160 96 --cases 2 \
                   --json "$OUT/smoke.json" ;;
        predict) stage predict 420 $PY benchmarks/predict_e2e.py --device cuda --workers 4 --data /tmp/ct \
                     --json "$OUT/predict.json" ;;
        predict-bn) stage predict-bn 420 $PY benchmarks/predict_e2e.py --device cuda --workers 4 --data /tmp/ct \
                        --norm batch --json "$OUT/predict_bn.json" ;;
        stages) stage stages 240 $PY benchmarks/predict_stages.py --device cuda --data /tmp/ct --json "$OUT/stages.json" ;;
        inflate) stage inflate 240 $PY benchmarks/inflate.py --data /tmp/ct --concurrent 4 \
                     --json "$OUT/inflate.json" ;;
        forward) stage forward 300 $PY benchmarks/forward_variants.py ;;
        forward-profile) stage forward-profile 300 $PY benchmarks/forward_variants.py --profile 3 ;;
        forward-compile) stage forward-compile 480 $PY benchmarks/forward_variants.py --compile --repeats 5 ;;
        train) stage train 300 $PY benchmarks/train_step.py --device cuda --size 128 128 128 --batch 2 \
                   --norm batch --json "$OUT/train.json" ;;
        train-profile) stage train-profile 300 $PY benchmarks/train_step.py --device cuda --size 128 128 128 --batch 2 \
                           --norm batch --profile 3 --json "$OUT/train.json" ;;
        train-ro) stage train-ro 420 $PY benchmarks/train_step.py --device cuda --size 128 128 128 --batch 2 \
                      --norm batch --compile reduce-overhead --json "$OUT/train_reduce_overhead.json" ;;
        train-compile) stage train-compile 420 $PY benchmarks/train_step.py --device cuda --size 128 128 128 \
                           --batch 2 --norm batch --compile --json "$OUT/train_compile.json" ;;
        *) echo "unknown stage $s"; exit 2 ;;
    esac
done
