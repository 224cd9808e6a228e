#!/usr/bin/env bash
# Reproduces the shipped reference model and its reports, end to end: datasets -> autoencoder -> PTEN and
# every Table-1 method -> ONNX export -> accuracy and speed reports. Each step is skipped when its output
# exists (delete it to redo). The training budget is set by EPOCHS and SAMPLES (windows per epoch); the
# shipped model used the defaults below on the 2-core CPU. Usage: bash scripts/train_reference.sh
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/scripts/setup.sh"
# shellcheck source=scripts/env.sh
source "$repo/scripts/env.sh"
cd "$repo"
EPOCHS=${EPOCHS:-10}
SAMPLES=${SAMPLES:-40000}
data=results/datasets
step() { echo; echo "=== $*"; }

# The shipped model uses only data that allows commercial use: CMU mocap, not Penn Action (research only).
[[ -f $data/motion_cmu/manifest.json ]] || { step "motion corpus (CMU only)";
  exlow-pose-data motion --out $data/motion_cmu --no-penn; }
[[ -f $data/teacher_vtest/manifest.json ]] || { step "teacher labels: vtest.avi (time split)";
  exlow-pose-data teacher assets/videos/vtest.avi --out $data/teacher_vtest --split-by time; }
[[ -f $data/teacher_sports2d/manifest.json ]] || { step "teacher labels: sports2d (held out)";
  exlow-pose-data teacher assets/videos/sports2d_demo.mp4 --out $data/teacher_sports2d --assign sports2d_demo.mp4=test; }
[[ -f $data/synthetic/manifest.json ]] || { step "synthetic renders";
  exlow-pose-data synthetic --out $data/synthetic --windows 100000 --workers 2; }

[[ -f results/train/autoencoder/best.pt ]] || { step "pose-transition autoencoder";
  exlow-pose-train training/configs/autoencoder.yaml; }
for method in pten_aligned pten cnn_transformer channel_combined_cnn independent_cnn simple_baseline; do
  [[ -f results/train/$method/best.pt ]] || { step "$method ($EPOCHS epochs x $SAMPLES windows)";
    exlow-pose-train training/configs/$method.yaml --set epochs=$EPOCHS --set samples_per_epoch=$SAMPLES \
      --set workers=1; }
done

step "export the shipped model: PTEN with frame alignment"
exlow-pose-export results/train/pten_aligned/best.pt --out models/exlow_pose_pten.onnx
step "accuracy report (held-out real video)"
exlow-pose-report --model PTEN=results/train/pten_aligned/best.pt --model PTEN-paper=results/train/pten/best.pt \
  --model CNNTransformer=results/train/cnn_transformer/best.pt \
  --model ChannelCombinedCNN=results/train/channel_combined_cnn/best.pt \
  --model IndependentCNN=results/train/independent_cnn/best.pt \
  --model SimpleBaseline=results/train/simple_baseline/best.pt
step "speed report"
exlow-pose-benchmark --model models/exlow_pose_pten.onnx --checkpoint results/train/pten_aligned/best.pt
