#!/usr/bin/env bash
# Rebuild the default zoo (harness/assets/checkpoints/zoo/) from the shipped baseline, on CamVid.
# Usage: bash scripts/make_zoo.sh [CAMVID_DIR] [STEP...]   (steps: decoder prune encoder distill; default all)
# Each command below is the one that made the shipped checkpoint (it is also saved inside it).
set -euo pipefail
DATA=${1:-../shared/data/camvid}
shift || true
STEPS=${*:-decoder prune encoder distill}
ZOO=harness/assets/checkpoints/zoo
WORK=build/zoo  # intermediate, untrained checkpoints (not shipped)
mkdir -p "$ZOO" "$WORK"
for step in $STEPS; do
  case $step in
    decoder)  # PSP decoder 512 -> 256 channels, then fine-tune
      harness reduce decoder-width pspnet_resnet18 --channels 256 --data "$DATA" --epochs 8 \
        --lr 3e-4 --out "$ZOO/pspnet_resnet18_decoder256.pt" ;;
    prune)  # 30 % of channels removed everywhere but the logits layer, then fine-tune
      harness reduce prune pspnet_resnet18 --ratio 0.3 --data "$DATA" --epochs 12 \
        --lr 3e-4 --out "$ZOO/pspnet_resnet18_pruned30.pt" ;;
    encoder)  # ResNet-18 -> MobileNetV2 encoder (depth 3), decoder and head carried over where they fit
      harness reduce encoder pspnet_resnet18 --to pspnet_mobilenet_v2 --data "$DATA" --epochs 30 \
        --out "$ZOO/pspnet_mobilenet_v2.pt" ;;
    distill)  # every eligible 3x3 conv made depthwise-separable, then distilled from the baseline
      harness reduce factorize pspnet_resnet18 --out "$WORK/pspnet_resnet18_factorized.pt"
      harness reduce distill pspnet_resnet18 --checkpoint "$WORK/pspnet_resnet18_factorized.pt" \
        --teacher pspnet_resnet18 --data "$DATA" --epochs 40 --patience 12 --lr 5e-4 \
        --out "$ZOO/pspnet_resnet18_factorized_distilled.pt" ;;
    *) echo "unknown step $step (decoder prune encoder distill)" >&2; exit 2 ;;
  esac
done
