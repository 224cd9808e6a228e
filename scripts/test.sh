#!/usr/bin/env bash
# The README's test command: sets up .venv when needed (scripts/setup.sh), then ruff and pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k image -x`.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/scripts/setup.sh"
# shellcheck source=scripts/env.sh
source "$repo/scripts/env.sh"
cd "$repo"
echo "[test] ruff check"
ruff check .
echo "[test] pytest (ROS_DOMAIN_ID chosen per run in test/conftest.py)"
exec python -m pytest "$@"
