#!/usr/bin/env bash
# Train the model families beyond the PSPNet-R18 zoo (harness/assets/checkpoints/families/) on CamVid.
# Usage: bash scripts/make_families.sh [CAMVID_DIR] [DEVICE] [STEP...]
#   steps: pspnet_resnet101 pspnet_resnet34 unet_small mobilenet_v2_pix2pix student student_pruned alexnet alexnet_pruned
#   (default all; student needs its teacher, TEACHER=pspnet_resnet34, the best, unless set; alexnet_pruned needs alexnet).
#   DEVICE: cpu (default) or cuda.
# The segmentation steps use the baseline's recipe (AdamW lr 1e-3, cosine over 50 epochs, batch 8, flips,
# early stop after 10 flat epochs); each command is also saved inside the checkpoint it made.
set -euo pipefail
DATA=${1:-../shared/data/camvid}
DEVICE=${2:-cpu}
shift 2 || shift $#
STEPS=${*:-pspnet_resnet101 pspnet_resnet34 unet_small mobilenet_v2_pix2pix student student_pruned alexnet alexnet_pruned}
OUT=harness/assets/checkpoints/families
WORK=build/families  # intermediate checkpoints and data (not shipped)
mkdir -p "$OUT" "$WORK"
RECIPE=(--data "$DATA" --ignore-index 11 --epochs 50 --patience 10 --device "$DEVICE" --weights-dtype float16)
for step in $STEPS; do
  case $step in
    pspnet_resnet101|pspnet_resnet34|unet_small)
      harness train "$step" "${RECIPE[@]}" --input-size 192x240 --out "$OUT/${step}_camvid.pt" ;;
    mobilenet_v2_pix2pix)  # stride 32: CamVid's 240 columns are padded to 256
      harness train "$step" "${RECIPE[@]}" --input-size 192x256 --out "$OUT/${step}_camvid.pt" ;;
    student)  # the zoo's factorized ResNet-18 (SVD-initialised from the baseline), distilled from $TEACHER (ResNet-34: the best val mIoU of the heavy teachers)
      TEACHER=${TEACHER:-pspnet_resnet34}
      harness reduce factorize pspnet_resnet18 --out "$WORK/pspnet_resnet18_factorized_$TEACHER.pt"
      harness reduce distill pspnet_resnet18 --checkpoint "$WORK/pspnet_resnet18_factorized_$TEACHER.pt" \
        --teacher "$OUT/${TEACHER}_camvid.pt" --data "$DATA" --epochs 40 --patience 12 --lr 5e-4 \
        --device "$DEVICE" --out "$OUT/pspnet_resnet18_factorized_distilled_${TEACHER#pspnet_}.pt" ;;
    student_pruned)  # that student with RATIO (default 0.5) of its channels pruned, distilled again from $TEACHER
      TEACHER=${TEACHER:-pspnet_resnet34}; RATIO=${RATIO:-0.5}; PCT=$(python3 -c "print(round($RATIO * 100))")
      STUDENT="$OUT/pspnet_resnet18_factorized_distilled_${TEACHER#pspnet_}.pt"
      harness reduce prune pspnet_resnet18 --checkpoint "$STUDENT" --ratio "$RATIO" \
        --out "$WORK/pspnet_resnet18_factorized_pruned${PCT}_$TEACHER.pt"
      harness reduce distill pspnet_resnet18 --checkpoint "$WORK/pspnet_resnet18_factorized_pruned${PCT}_$TEACHER.pt" \
        --teacher "$OUT/${TEACHER}_camvid.pt" --data "$DATA" --epochs "${EPOCHS:-80}" --patience 20 --lr "${LR:-5e-4}" \
        --device "$DEVICE" --out "$OUT/pspnet_resnet18_factorized_pruned${PCT}_distilled_${TEACHER#pspnet_}.pt" ;;
    student_pruned_round2)  # a second distillation of that pruned student (fresh cosine schedule), soft weight SOFT
      TEACHER=${TEACHER:-pspnet_resnet34}; PCT=$(python3 -c "print(round(${RATIO:-0.5} * 100))"); SOFT=${SOFT:-0.25}
      harness reduce distill pspnet_resnet18 \
        --checkpoint "$OUT/pspnet_resnet18_factorized_pruned${PCT}_distilled_${TEACHER#pspnet_}.pt" \
        --teacher "$OUT/${TEACHER}_camvid.pt" --data "$DATA" --epochs "${EPOCHS:-100}" --patience 30 --lr 3e-4 \
        --soft-weight "$SOFT" --device "$DEVICE" \
        --out "$OUT/pspnet_resnet18_factorized_pruned${PCT}_distilled_${TEACHER#pspnet_}_round2_soft${SOFT#0.}.pt" ;;
    alexnet)  # 60x60 crops labelled by majority class, padded to 64x64; the 1x1 features feed a 512-wide head
      python scripts/make_camvid_crops.py "$DATA" "$WORK/camvid_crops_training" --training
      harness train alexnet --task classification --data "$WORK/camvid_crops_training" --input-size 64x64 \
        --model-arg hidden_units=512 --model-arg pool_size=1 --epochs 40 --patience 8 --batch-size 32 \
        --device "$DEVICE" --weights-dtype float16 --out "$OUT/alexnet_camvid_crops.pt" ;;
    alexnet_pruned)  # 30 % of the channels of every layer but the logits, L2 magnitude, then fine-tuned
      harness reduce prune alexnet --checkpoint "$OUT/alexnet_camvid_crops.pt" --ratio 0.3 \
        --data "$WORK/camvid_crops_training" --epochs 20 --patience 8 --batch-size 32 --lr 3e-4 \
        --device "$DEVICE" --weights-dtype float16 --out "$OUT/alexnet_camvid_crops_pruned30.pt" ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
