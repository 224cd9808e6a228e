#!/usr/bin/env bash
# The README's main command: sets up .venv when needed (scripts/setup.sh), then runs the whole
# ROS 2 pipeline on a real video. Extra arguments go to exlow_pose_demo (see --help).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/scripts/setup.sh"
# shellcheck source=scripts/env.sh
source "$repo/scripts/env.sh"
cd "$repo"
exec exlow_pose_demo "$@"
