"""scripts/gpu_check.sh: valid bash, and on a machine without an NVIDIA GPU it stops at once and says why."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"


def test_gpu_check_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine may have a GPU")
def test_gpu_check_without_a_gpu_exits_non_zero_with_the_reason():
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "no NVIDIA GPU on this machine" in done.stderr
    assert not (SCRIPT.parents[1] / ".gpu_site").exists(), "nothing is installed before the GPU check"
