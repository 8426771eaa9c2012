#!/usr/bin/env bash
# The CPU run behind docs/results.md and fskd_ros/models/MODEL_CARD.md:
# distil MobileViT-XXS from EfficientNet-Lite2 on the Caltech-101 base classes,
# train the no-teacher MobileViT-XXS and a quarter-width ResNet12 with CE,
# export every encoder to ONNX and evaluate all (plus the teacher) on
# caltech101 novel, neu-cls and omniglot-small through the runtime's
# onnxruntime backend. One thread everywhere (a shared 2-core machine).
#
#   bench/train_caltech.sh [RUNS_DIR] [STAGE...]   stages: distill ce_xxs resnet12 stdtarget teacher longer ablation
#
# Every step resumes / reuses caches, so re-running after an interruption is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
R=${1:-runs}; shift || true
STAGES=${*:-distill ce_xxs resnet12 stdtarget teacher longer ablation}
DATA=${DATA:-$(cd ../shared/data && pwd -P)}
BASE="$DATA/caltech101@base"
C="$R/cache"
export OMP_NUM_THREADS=1
FSKD="nice -n 10 $PY -m fskd_ros.cli"
TRAIN="--threads 1 --seed 0 --cache-dir $C --data $BASE --input-size 84 --batch-size 64"
EVAL="--threads 1 --cache-dir $C --episodes 2000 --output-dir $R/eval --merge"

# Optional: wait for an already running job (WAIT_PID) before starting.
if [ -n "${WAIT_PID:-}" ]; then while kill -0 "$WAIT_PID" 2>/dev/null; do sleep 20; done; fi

export_eval() {  # NAME -> runs/onnx/NAME.onnx (base mean over all base images) -> eval
  $FSKD export "$R/$1/final.pt" -o "$R/onnx/$1.onnx" --base-data "$BASE" --threads 1 --cache-dir "$C"
  $FSKD eval "$1=$R/onnx/$1.onnx" $EVAL
}

for stage in $STAGES; do
  case $stage in
  distill)  # teacher at 160 px (260 native is 4 img/s on one core), 3 cached views per image
    $FSKD distill --student mobilevit_xxs --teacher efficientnet_lite2 --teacher-size 160 \
      --views 3 --epochs 10 --output-dir "$R/distill_xxs_t160" $TRAIN
    export_eval distill_xxs_t160 ;;
  ce_xxs)  # same base images, same crops (source 168 px), plain cross-entropy
    $FSKD train --arch mobilevit_xxs --epochs 10 --source-size 168 \
      --output-dir "$R/ce_xxs" $TRAIN
    export_eval ce_xxs ;;
  resnet12)
    # ResNet12 at quarter width: 2.2x the step time of XXS; 5 epochs ~ the same wall-clock.
    $FSKD train --arch resnet12_tiny --epochs 5 --source-size 168 \
      --output-dir "$R/ce_resnet12_tiny" $TRAIN
    export_eval ce_resnet12_tiny ;;
  teacher)  # the teacher itself, at the student's 84 px and at the distillation's 160 px
    for size in 84 160; do
      $FSKD export teacher:efficientnet_lite2 --input-size $size -o "$R/onnx/teacher_lite2_$size.onnx" \
        --base-data "$BASE" --base-max-per-class 20 --threads 1 --cache-dir "$C"
      $FSKD eval "efficientnet_lite2@$size=$R/onnx/teacher_lite2_$size.onnx" $EVAL
    done ;;
  stdtarget)  # as `distill`, but MSE to per-dimension standardised teacher features
    $FSKD distill --student mobilevit_xxs --teacher efficientnet_lite2 --teacher-size 160 \
      --views 3 --epochs 10 --target-norm standardize --output-dir "$R/distill_xxs_t160_std" $TRAIN
    export_eval distill_xxs_t160_std ;;
  longer)  # the distillation continued to 20 epochs (cosine schedule stretched to 20 epochs)
    OUT="$R/distill_xxs_t160_e20"
    FROM=$([ -f "$OUT/last.pt" ] && echo auto || echo "$R/distill_xxs_t160/last.pt")
    $FSKD distill --student mobilevit_xxs --teacher efficientnet_lite2 --teacher-size 160 \
      --views 3 --epochs 20 --resume "$FROM" --output-dir "$OUT" $TRAIN
    export_eval distill_xxs_t160_e20 ;;
  ablation)  # teacher resolution: distil from the teacher at 84 px (same crops)
    $FSKD distill --student mobilevit_xxs --teacher efficientnet_lite2 --teacher-size 84 \
      --source-size 168 --views 3 --epochs 10 --output-dir "$R/distill_xxs_t84" $TRAIN
    export_eval distill_xxs_t84 ;;
  eval) ;;  # kept for symmetry: every stage evaluates what it trains
  *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
