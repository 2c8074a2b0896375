#!/bin/bash
# GPU checks in one call on a lent GPU machine (no network; PyTorch and JAX installed, no
# TensorFlow). Prepare on the CPU machine, in the repository root:
#   python benchmarks/gpu.py --write-reference .gpu/reference      # TF CPU outputs + inputs
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform \
#       manylinux_2_28_x86_64 -d .whl keras namex optree nibabel  # what the machine lacks
# then run `bash scripts/device-check.sh` there with .gpu, .whl (and .cache/labels when
# training) carried. Outputs land in $OUT (default .gpu/out).
# The lesion model's FLAIR + T1w path registers the images with SimpleITK, which the GPU
# machines lack and whose wheel (~50 MiB) does not fit the 64 MiB carry beside the whole
# reference (13 MB): for that row write a lesion-only reference (5 MB) and add the wheel (~61 MiB in all),
#   python benchmarks/gpu.py --write-reference .gpu/reference \
#       --tasks lesion-segmentation,lesion-segmentation-flair
#   pip download ... -d .whl keras namex optree nibabel SimpleITK   (platform manylinux2014)
# and run with TASKS=lesion-segmentation,lesion-segmentation-flair.
#   BUDGET=seconds   the wall time this script may use (default 400)
#   TASKS=a,b        the benchmarks/gpu.py tasks (default: all four)
#   TRAIN_ARGS="brain-extraction --labels .cache/labels --work-dir /tmp/w ..."  optional:
#                    a bids-dl-train command run with --time-limit for what is left; its
#                    work dir's checkpoint, state and final model are copied to $OUT
#                    e.g. the lesion model on a finer grid: "lesion-segmentation --labels
#                    .cache/labels --work-dir /tmp/w --init-from
#                    bids_dl/data/models/lesion_segmentation.keras --init-output
#                    --grid-spacing 1.2 --batch-size 8 --pool 100 --workers 14 --no-evaluate"
#                    (a pool: a fresh 1.2 mm head takes ~15 s of a core; 100 take ~2 min)
#                    or the synthesis mixture with the adversarial term (run a control
#                    without --adversarial beside it; docs/development-log.md, session 29):
#                    "contrast-synthesis --labels .cache/labels --work-dir /tmp/s --init-from
#                    bids_dl/data/models/contrast_synthesis.keras --init-output --activation
#                    leaky_relu --patch-on-lesion 0.5 --batch-size 8 --pool 100 --workers 14
#                    --patch-steps 4000 --adversarial 0.05 --no-evaluate"
#                    (--residual instead of --adversarial: the learned correction over
#                    the mixture, session 30; watch the lesion contrast)
set -u
START=$(date +%s); BUDGET=${BUDGET:-400}; OUT=${OUT:-.gpu/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
TASKS=${TASKS:-brain-extraction,lesion-segmentation,lesion-segmentation-flair,contrast-synthesis}
B="python3 benchmarks/gpu.py --reference .gpu/reference --tasks $TASKS"
echo "== PyTorch (TF32 off, the default of --device)"
KERAS_BACKEND=torch timeout 120 $B --runs 3 --json "$OUT/gpu_torch.json" 2>&1 | grep -v -i warn
echo "== PyTorch, TF32 on"
NVIDIA_TF32_OVERRIDE=1 KERAS_BACKEND=torch timeout 90 $B --runs 1 \
    --json "$OUT/gpu_torch_tf32.json" 2>&1 | grep -v -i warn | tail -6
if [ -f .gpu/reference/ch2.nii.gz ]; then
    echo "== JAX (TF32 off)"
    KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 60 $B --runs 1 \
        --tasks brain-extraction --json "$OUT/gpu_jax.json" 2>&1 | grep -v -i warn | tail -4
    echo "== whole process"
    /usr/bin/time -f "%e s, %M KB: bids-dl-infer brain-extraction --device gpu (PyTorch)" \
        env KERAS_BACKEND=torch python3 -m bids_dl.cli.infer brain-extraction \
        .gpu/reference/ch2.nii.gz /tmp/ch2 --device gpu 2>&1 | tail -2
fi
if [ -n "${TRAIN_ARGS:-}" ]; then
    LEFT=$(( BUDGET - ($(date +%s) - START) - 40 ))
    WORK=$(echo "$TRAIN_ARGS" | sed -n 's/.*--work-dir \([^ ]*\).*/\1/p')
    echo "== training for $LEFT s in $WORK"
    # shellcheck disable=SC2086
    KERAS_BACKEND=torch python3 -m bids_dl.training.cli $TRAIN_ARGS --time-limit "$LEFT" 2>&1 \
        | tr '\r' '\n' | grep -v -i warn \
        | awk 'NR%25==1 || /initialised|resum|stopped|wrote|rror|Trace/' | tail -40
    cp "$WORK"/checkpoint.keras "$WORK"/state.json "$OUT"/ 2>/dev/null
    [ -f "$WORK/discriminator.keras" ] && cp "$WORK/discriminator.keras" "$OUT/"  # --adversarial
    [ -f "$WORK/final.keras" ] && cp "$WORK/final.keras" "$OUT/"
fi
echo "total $(( $(date +%s) - START )) s"
