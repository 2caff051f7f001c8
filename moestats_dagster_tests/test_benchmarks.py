"""Every benchmark part still runs: once each, at a tiny size (`benchmarks.run --tiny`). This
asserts that it completes and writes its figures, never a speed: figures are for `make bench`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.run import PARTS

ROOT = Path(__file__).resolve().parents[1]
BOUND = 600  # a bound against a hang on a loaded machine, not a speed


@pytest.mark.parametrize("part", PARTS)
def test_the_benchmark_part_runs(part, tmp_path):
    out = tmp_path / "results.json"
    env = {**os.environ, "MOESTATS_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--tiny", "--only", part, "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=BOUND,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures.get(part), f"{part} wrote no figures"
    assert f"[{part}]" in done.stdout
