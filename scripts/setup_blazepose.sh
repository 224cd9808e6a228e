#!/usr/bin/env bash
# Creates .venv-blazepose: mediapipe 0.10.21 (the last release that still ships BlazePose,
# pose_landmark_full.tflite, legacy mp.solutions.pose) for the independent reference labels of
# `exlow-pose-data blazepose`. A venv of its own because mediapipe needs numpy<2 and protobuf<5,
# which would break .venv (numpy 2, ROS 2 wheels): never install it there.
#
# mediapipe goes in without its declared dependencies: jax/jaxlib, sentencepiece, sounddevice and
# opencv-contrib-python serve other solutions (model maker, audio, text); mp.solutions.pose needs only
# the packages below (drawing_utils, imported by mp.solutions, pulls in cv2 and matplotlib).
# Idempotent: skipped while the stamp matches. Usage: bash scripts/setup_blazepose.sh [--force]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="${EXLOW_BLAZEPOSE_VENV:-$repo/.venv-blazepose}"
packages=(mediapipe==0.10.21)
needs=(numpy==1.26.4 protobuf==4.25.9 absl-py==2.5.1 attrs==26.1.0 flatbuffers==25.12.19 matplotlib==3.11.2
       opencv-python-headless==4.11.0.86 tqdm)
stamp="$venv/.exlow_blazepose_stamp"
want="${packages[*]} ${needs[*]}"

log() { printf '[setup_blazepose] %s\n' "$*"; }

if [[ "${1:-}" != "--force" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  log "$venv is current"
  exit 0
fi
if [[ ! -x "$venv/bin/python" ]]; then
  python=${PYTHON:-$(command -v python3.11 || true)}
  [[ -n "$python" ]] || { log "ERROR: mediapipe 0.10.21 has cp311 wheels here; python3.11 not found" >&2; exit 1; }
  log "creating $venv with $($python --version)"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
# The "requires X, which is not installed" lines are the deliberately skipped dependencies above.
"${pip[@]}" install --no-deps "${packages[@]}" 2> >(grep -v "^WARNING: Location 'file://" >&2)
"${pip[@]}" install "${needs[@]}" 2> >(grep -v -e "^WARNING: Location 'file://" -e "mediapipe 0.10.21 requires" -e "dependency resolver does not" >&2)
# Smoke test: builds the BlazePose graph offline (model_complexity=1 is the model the wheel ships).
"$venv/bin/python" - <<'EOF'
import numpy as np
import mediapipe as mp

with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1) as pose:
    pose.process(np.zeros((64, 64, 3), np.uint8))
print(f"mediapipe {mp.__version__}: BlazePose runs")
EOF
printf '%s' "$want" >"$stamp"
log "done: $venv"
