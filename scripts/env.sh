# Source this to use the .venv that scripts/setup.sh made: `source scripts/env.sh`.
_exlow_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export VIRTUAL_ENV="$_exlow_repo/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
# ament_index_python finds packages (ours and the wheels') through this prefix.
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# Nothing may be downloaded at run time: Ultralytics gets local weight paths and stays offline.
export YOLO_OFFLINE=1
export EXLOW_POSE_ASSETS="${EXLOW_POSE_ASSETS:-$_exlow_repo/assets}"
unset _exlow_repo
