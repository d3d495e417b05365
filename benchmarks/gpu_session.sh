#!/usr/bin/env bash
# The GPU benchmark set in one go, for a lent GPU machine that has torch but not segkit's other dependencies and
# no network: installs the wheels in .whl/ (if any) and segkit into /tmp, then runs each benchmark under its own
# time limit, writing logs and JSON to $OUT (default ./bench-out). A stage that fails does not stop the others.
#
#     bash benchmarks/gpu_session.sh [stage ...]     # tests smoke predict predict-bn stages forward forward-compile
#                                                    # forward-profile train train-profile train-compile train-ro inflate
#
# A lent machine gives 15 minutes of device time in all and at most 10 minutes per command, and the stages' own
# limits add up to far more. BUDGET_S=N (make bench-gpu: 540) starts no stage after N seconds from the start of this
# script: a stage is skipped when less is left than it usually takes (EXPECTED below) and is cut at what is left;
# so list the stages most wanted first. ARCHIVE=path.tar.gz rewrites one archive of $OUT after every stage (a lent
# machine returns at most 8 files, and what a killed command left behind): keep it outside $OUT.
# $OUT/session.txt lists each stage with its exit code and seconds (rc 124: cut at its limit).
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-bench-out}
BUDGET_S=${BUDGET_S:-0}  # 0: no overall limit
ARCHIVE=${ARCHIVE:-}
STAGES=${*:-smoke predict stages forward train train-compile}
KNOWN=" tests smoke predict predict-bn stages inflate forward forward-profile forward-compile train train-profile \
train-ro train-compile "
for s in $STAGES; do  # a misspelt stage is refused before anything runs, not found after the others
    case $KNOWN in *" $s "*) ;; *) echo "unknown stage $s; the stages:$KNOWN"; exit 2 ;; esac
done
mkdir -p "$OUT"
PY=${PYTHON:-python3}
START=$SECONDS

archive() {
    [ -n "$ARCHIVE" ] || return 0
    tar -czf "$ARCHIVE.part" --exclude="$(basename "$ARCHIVE")*" -C "$OUT" . && mv -f "$ARCHIVE.part" "$ARCHIVE"
}

# A call carries at most 64 MiB of ignored files, so the wheels may come over several calls: each call installs
# the wheels it carried into /tmp/site, which outlives the call while the machine stays warm. Fetching them here
# from the local package index for the lent machine's Python 3.12 (checked 2026-12-07: 68 MB with rapidgzip, so
# carry rapidgzip's wheel in a second call):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#       --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 -d .whl monai nibabel SimpleITK isal \
#       albumentations albucore pydantic pydantic-core annotated-types typing-inspection safetensors rich
if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
if [ -d /tmp/site ]; then export PYTHONPATH=/tmp/site; fi
if ! $PY -c "import monai, segkit.pipelines" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade --target /tmp/segkit . || exit 1
    export PYTHONPATH=/tmp/segkit${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
df -h /dev/shm | tail -n 1 | tee -a "$OUT/gpu.txt"  # MONAI's DataLoader workers hand cases over through it
# every stage needs CUDA and MONAI: stop here, in seconds, rather than fail each stage after its imports
versions="import sys, torch, monai; print('torch', torch.__version__, 'monai', monai.__version__, 'cuda', \
torch.version.cuda); sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU for ' + sys.executable)"
if ! found=$($PY -c "$versions" 2>&1); then
    echo "$found" | tail -n 5 | tee -a "$OUT/gpu.txt"
    echo "stopping: $PY cannot run the GPU benchmarks"
    archive
    exit 1
fi
echo "$found" | tee -a "$OUT/gpu.txt"
archive

stage() {  # stage NAME EXPECTED_SECONDS LIMIT_SECONDS COMMAND...
    local name=$1 expected=$2 limit=$3; shift 3
    if [ "$BUDGET_S" -gt 0 ]; then
        local left=$((BUDGET_S - (SECONDS - START)))
        if [ "$left" -lt "$expected" ]; then
            echo "=== $name skipped: ${left} s of BUDGET_S=$BUDGET_S left, it takes about $expected s"
            echo "$name skipped (${left} s left of BUDGET_S=$BUDGET_S, needs about $expected s)" >> "$OUT/session.txt"
            return
        fi
        if [ "$left" -lt "$limit" ]; then limit=$left; fi
    fi
    echo "=== $name ($(date +%T), limit $limit s)"
    local started=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 40 "$OUT/$name.log"
    echo "=== $name rc=$rc ($((SECONDS - started)) s)"
    echo "$name rc=$rc $((SECONDS - started)) s" >> "$OUT/session.txt"
    archive
}

# EXPECTED: seconds a stage took on the H100 lent before (JSON end times in benchmarks/results/*h100*.json and
# docs/BENCHMARKS.md), with imports and, for predict, writing the 512x512x300 volumes into a fresh /tmp/ct
for s in $STAGES; do
    case $s in
        tests) stage tests 60 240 $PY -m pytest -q -p no:cacheprovider tests/models/test_fast_instance_norm.py \
                   tests/models/test_space_to_depth.py tests/inference/test_cuda_graph.py ;;
        smoke) stage smoke 60 150 $PY benchmarks/predict_e2e.py --device cuda --size 160 160 96 --cases 2 \
                   --json "$OUT/smoke.json" ;;
        predict) stage predict 210 420 $PY benchmarks/predict_e2e.py --device cuda --workers 4 --data /tmp/ct \
                     --json "$OUT/predict.json" ;;
        predict-bn) stage predict-bn 180 420 $PY benchmarks/predict_e2e.py --device cuda --workers 4 --data /tmp/ct \
                        --norm batch --json "$OUT/predict_bn.json" ;;
        stages) stage stages 45 240 $PY benchmarks/predict_stages.py --device cuda --data /tmp/ct \
                    --json "$OUT/stages.json" ;;
        inflate)
            if $PY -c "import rapidgzip" 2>/dev/null; then
                stage inflate 45 240 $PY benchmarks/inflate.py --data /tmp/ct --concurrent 4 --json "$OUT/inflate.json"
            else  # without its contender the benchmark measures nothing new
                echo "=== inflate skipped: rapidgzip is not installed (carry its wheel in .whl/)"
                echo "inflate skipped (no rapidgzip)" >> "$OUT/session.txt"
            fi ;;
        forward) stage forward 60 300 $PY benchmarks/forward_variants.py ;;
        forward-profile) stage forward-profile 120 300 $PY benchmarks/forward_variants.py --profile 3 ;;
        forward-compile) stage forward-compile 300 480 $PY benchmarks/forward_variants.py --compile --repeats 5 ;;
        train) stage train 60 300 $PY benchmarks/train_step.py --device cuda --size 128 128 128 --batch 2 \
                   --norm batch --json "$OUT/train.json" ;;
        train-profile) stage train-profile 90 300 $PY benchmarks/train_step.py --device cuda --size 128 128 128 \
                           --batch 2 --norm batch --profile 3 --json "$OUT/train.json" ;;
        train-ro) stage train-ro 160 420 $PY benchmarks/train_step.py --device cuda --size 128 128 128 --batch 2 \
                      --norm batch --compile reduce-overhead --json "$OUT/train_reduce_overhead.json" ;;
        train-compile) stage train-compile 160 420 $PY benchmarks/train_step.py --device cuda --size 128 128 128 \
                           --batch 2 --norm batch --compile --json "$OUT/train_compile.json" ;;
    esac
done
echo "=== done in $((SECONDS - START)) s"
cat "$OUT/session.txt" 2>/dev/null
