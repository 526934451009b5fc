"""Every script in benchmarks/ runs, at a tiny size, and writes only where it is told.

The scripts are not part of the installed package: each runs as ``python benchmarks/NAME.py``
from the checkout, as its docstring says.  Results go to ``tmp_path`` (``--out``); the committed
results must be left as they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from onnx_cases import onnx_cache  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"
SCRIPTS = sorted(p.name for pattern in ("bench_*.py", "calibrate_*.py") for p in BENCHMARKS.glob(pattern))


def committed() -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(RESULTS.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def untouched():
    """The committed results before the scripts ran; checked after each."""
    return committed()


def run(script: str, *args: str) -> str:
    """Run ``benchmarks/script`` (OpenMP at one thread unless it sets its own); its stdout, or a failure."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"{script}: {result.stderr[-3000:]}"
    return result.stdout


def test_every_script_has_a_smoke_test() -> None:
    assert set(SCRIPTS) == set(TINY), "add the new script to TINY"


def _reject(constant: str) -> None:
    raise ValueError(constant)


TINY = {
    "bench_kernels.py": ["--threads", "1", "--sizes", "0.05", "--rounds", "1"],
    "calibrate_niqe.py": ["--limit", "1"],
    "bench_levers.py": ["--images", "2", "--runs", "1", "--variants", "momentum 0.5 + blur 1 (default)"],
    "bench_step_efficiency.py": ["--quick", "--batch", "1", "--threads", "1", "--repeats", "1", "--precisions", "fp32"],
    "bench_memory.py": ["--victims", "efficientnet-lite0", "--steps", "1", "--megapixels", "0.3", "--photos", "2", "--stream-steps", "1"],
    # These write results: into tmp_path, given by the test.
    "bench_amortised.py": ["--victims", "efficientnet-lite0", "--images", "2", "--runs", "1", "--batch-size", "2", "--threads", "1"],
    "bench_backends.py": ["--victims", "efficientnet-lite0", "--batches", "1", "--warmup", "0", "--repeats", "1"],
    "bench_brisque.py": ["--threads", "1", "--sizes", "64x96", "--batches", "1", "--variants", "plain", "fused",
                         "--warmup", "1", "--rounds", "1", "--name", "tiny"],
    "bench_strength.py": ["--victims", "efficientnet-lite0", "--strengths", "low", "--eps", "8,4", "--images", "2",
                          "--size", "96", "--threads", "1", "--check-every", "3", "--name", "tiny"],
    "bench_standins.py": ["--sizes", "48x64", "--rounds", "1", "--threads", "1", "--name", "tiny"],
    "bench_service.py": ["--victim", "efficientnet-lite0", "--strength", "low", "--steps", "1", "--requests", "2",
                         "--clients", "2", "--soak", "2"],
}
EXPECT = {
    "bench_kernels.py": "load average after",
    "calibrate_niqe.py": "blur 2 + jpeg 90:",
    "bench_levers.py": "momentum 0.5 + blur 1 (default)",
    "bench_step_efficiency.py": "fp32 peak",
    "bench_memory.py": "RSS over the run",
}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(EXPECT))
def test_printing_scripts(script, untouched) -> None:
    assert EXPECT[script] in run(script, *TINY[script])
    assert committed() == untouched


@pytest.mark.slow
def test_bench_amortised_writes_standard_json_where_told(tmp_path, untouched) -> None:
    protectors = tmp_path / "protectors"
    protectors.mkdir()
    shutil.copy(RESULTS / "protectors" / "efficientnet-lite0.pt", protectors)  # trained: no training here
    out = run("bench_amortised.py", *TINY["bench_amortised.py"], "--out", str(tmp_path / "out"), "--protectors", str(protectors))
    assert "trained" not in out
    data = json.loads((tmp_path / "out" / "amortised-efficientnet-lite0.json").read_text(), parse_constant=_reject)
    assert data["victim"] == "efficientnet-lite0"
    assert [r["setting"] for r in data["rows"]] == ["protector + 0 steps", "protector + 10 steps", "I-FGSM 40 steps"]
    assert data["non_finite"]["/rows/0/s_per_row"] == "nan"  # no gradient rows: null, and named
    assert committed() == untouched


@pytest.mark.slow
def test_bench_backends_writes_where_told(tmp_path, onnx_cache, untouched) -> None:  # noqa: F811
    run("bench_backends.py", *TINY["bench_backends.py"], "--cache-dir", str(onnx_cache), "--out", str(tmp_path))
    lines = (tmp_path / "backends.csv").read_text().splitlines()
    assert len(lines) == 1 + 4  # torch and onnxruntime, forward and forward+grad
    assert "| efficientnet-lite0 | 224x224 | 1 | forward+grad |" in (tmp_path / "backends.md").read_text()
    assert committed() == untouched


@pytest.mark.slow
@pytest.mark.parametrize(("script", "files"), [
    ("bench_brisque.py", ["tiny_steps.json", "tiny_mixed.json"]),
    ("bench_strength.py", ["tiny.json"]),
    ("bench_standins.py", ["tiny.json"]),
])
def test_scripts_that_write_json_write_standard_json_where_told(script, files, tmp_path, untouched) -> None:
    run(script, *TINY[script], "--out", str(tmp_path))
    for name in files:
        assert json.loads((tmp_path / name).read_text(), parse_constant=_reject)["rows"]
    if script == "bench_strength.py":  # one row per --eps value, each attacked at its own eps
        rows = json.loads((tmp_path / "tiny.json").read_text())["rows"]
        assert [r["eps_255"] for r in rows] == [8, 4]
        assert [r["check_every"] for r in rows] == [3, 3]  # low's own is 1
    assert committed() == untouched


@pytest.mark.slow
def test_bench_service_measures_a_live_service_and_writes_where_told(tmp_path, untouched) -> None:
    run("bench_service.py", *TINY["bench_service.py"], "--out", str(tmp_path))
    data = json.loads((tmp_path / "bench_service.json").read_text(), parse_constant=_reject)
    [level] = data["levels"]
    assert level["clients"] == 2 and level["requests"] == 2 and level["errors"] == 0
    assert level["gradient_passes"] >= 1 and level["protect"]["photos"] == 2
    assert data["soak"]["requests"] == 2 and data["soak"]["errors"] == 0
    assert data["mixed"]["all_as_expected"], data["mixed"]["rows"]
    assert "| mixed request |" in (tmp_path / "bench_service.md").read_text()
    assert committed() == untouched
