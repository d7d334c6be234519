"""bench/gpu.sh is what a GPU machine runs, rarely: its CPU dry run keeps it from rotting between leases."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _gpu_sh(*parts, tmp_path):
    env = {**os.environ, "DEVICE": "cpu", "DRY": "1", "PYTHON": sys.executable, "OUT": str(tmp_path / "gpu"),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), *parts], capture_output=True, text=True, env=env,
                          timeout=300)


def test_the_gpu_script_check_part_runs_on_the_cpu(tmp_path):
    done = _gpu_sh("check", tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok    cuda graph replay = eager step (sgd" in done.stdout
    assert "gpu_step_check on cpu: 0 failures" in done.stdout


def test_the_gpu_script_refuses_an_unknown_part(tmp_path):
    done = _gpu_sh("chek", tmp_path=tmp_path)
    assert done.returncode == 2 and "unknown part 'chek'" in done.stderr
