"""The fused I-FGSM step: every implementation equals the torch reference bit for bit."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from camo_engine.kernels import ifgsm_step
from camo_engine.kernels.ifgsm_step import (
    ImplementationUnavailable,
    available_implementations,
    reference,
    select,
)
from torch import Tensor

KERNELS = Path(ifgsm_step.__file__).parent
SHAPES = [(1,), (3, 7, 13), (2, 3, 5, 4), (3, 61, 97)]  # odd sizes: vector loops leave tails
BUDGETS = [(1 / 255, 8 / 255), (0.05, 0.05), (0.003, 0.1)]  # (alpha, eps); alpha == eps too

needs_numba = pytest.mark.skipif(
    "cpu-fused" not in available_implementations(),
    reason="numba is not installed: cpu-fused and numba-cuda are not tested",
)


def edge_case(shape: tuple[int, ...], alpha: float, eps: float, seed: int = 0) -> list[Tensor]:
    """(x, grad, centre) with the edges that matter: ball and [0, 1] bounds, zero, NaN, denormal."""
    gen = torch.Generator().manual_seed(seed)
    n = math.prod(shape)
    centre = torch.rand(n, generator=gen)
    centre[::7], centre[3::7] = 0.0, 1.0
    e, a = torch.tensor(eps), torch.tensor(alpha)  # float32, as the kernels round them
    offsets = torch.stack(
        [
            torch.zeros(n),
            e.expand(n),
            -e.expand(n),
            (e - a).expand(n),
            (torch.rand(n, generator=gen) * 2 - 1) * e,  # inside the ball
            (torch.rand(n, generator=gen) * 4 - 2) * e,  # outside it, as after a random start
        ]
    )
    pick = torch.randint(0, len(offsets), (n,), generator=gen)
    x = (centre + offsets[pick, torch.arange(n)]).clamp(0, 1)
    x[5::11], x[6::11] = 0.0, 1.0
    x[9::23], centre[10::29] = math.nan, math.nan
    grad = torch.randn(n, generator=gen)
    grad[::5], grad[1::9], grad[2::13] = 0.0, -0.0, math.nan
    grad[4::17], grad[8::19] = 1e-45, -math.inf  # a denormal still has a sign
    return [t.reshape(shape) for t in (x, grad, centre)]


def assert_bits_equal(actual: Tensor, expected: Tensor) -> None:
    differ = actual.view(torch.int32) != expected.view(torch.int32)
    assert not differ.any(), f"{int(differ.sum())} of {differ.numel()} elements differ"


def test_edge_cases_tell_float32_from_float64() -> None:
    """Computing in float64 changes bits on this data, so the equalities below would notice."""
    x, grad, centre = (t.double() for t in edge_case((3, 61, 97), 1 / 255, 8 / 255))
    wide = (centre + (x - (1 / 255) * grad.sign() - centre).clamp(-8 / 255, 8 / 255)).clamp(0, 1)
    expected = reference(*edge_case((3, 61, 97), 1 / 255, 8 / 255), 1 / 255, 8 / 255)
    assert (wide.float().view(torch.int32) != expected.view(torch.int32)).any()


def test_reference_is_what_the_attack_does() -> None:
    x, grad, centre = edge_case((3, 7, 13), 1 / 255, 8 / 255)
    stepped = x - (1 / 255) * grad.sign()
    attack = (centre + (stepped - centre).clamp(-8 / 255, 8 / 255)).clamp_(0, 1)
    assert_bits_equal(reference(x, grad, centre, 1 / 255, 8 / 255), attack)


@needs_numba
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("alpha", "eps"), BUDGETS)
def test_cpu_fused_equals_reference(shape: tuple[int, ...], alpha: float, eps: float) -> None:
    x, grad, centre = edge_case(shape, alpha, eps)
    expected = reference(x, grad, centre, alpha, eps)
    assert_bits_equal(select("cpu-fused")(x, grad, centre, alpha, eps), expected)
    assert_bits_equal(ifgsm_step.sign_step_project(x, grad, centre, alpha, eps), expected)


@pytest.mark.parametrize("name", ["torch", pytest.param("cpu-fused", marks=needs_numba)])
@pytest.mark.parametrize("target", ["x", "grad", "centre", "new"])
def test_out_in_place(name: str, target: str) -> None:
    inputs = dict(zip(("x", "grad", "centre"), edge_case((3, 7, 13), 1 / 255, 8 / 255)))
    expected = reference(**inputs, alpha=1 / 255, eps=8 / 255)
    out = inputs[target] if target != "new" else torch.empty_like(expected)
    result = select(name)(**inputs, alpha=1 / 255, eps=8 / 255, out=out)
    assert result is out
    assert_bits_equal(out, expected)


@pytest.mark.parametrize("name", ["torch", pytest.param("cpu-fused", marks=needs_numba)])
def test_non_contiguous_inputs(name: str) -> None:
    x, grad, centre = (t.transpose(1, 2) for t in edge_case((3, 7, 13), 1 / 255, 8 / 255))
    expected = reference(x.contiguous(), grad.contiguous(), centre.contiguous(), 1 / 255, 8 / 255)
    assert_bits_equal(select(name)(x, grad, centre, 1 / 255, 8 / 255), expected)


@pytest.mark.parametrize("name", ["torch", pytest.param("cpu-fused", marks=needs_numba)])
def test_bad_arguments_are_refused(name: str) -> None:
    step = select(name)
    x, grad, centre = edge_case((4, 8), 1 / 255, 8 / 255)
    with pytest.raises(ValueError, match="float32"):
        step(x.double(), grad, centre, 1 / 255, 8 / 255)
    with pytest.raises(ValueError, match="grad is"):
        step(x, grad[:2], centre, 1 / 255, 8 / 255)
    with pytest.raises(ValueError, match="contiguous"):
        step(x, grad, centre, 1 / 255, 8 / 255, out=torch.empty(8, 4).t())
    # Out shifted by one row over x: an elementwise kernel would read what it has just written.
    both = torch.cat([x, x])
    with pytest.raises(ValueError, match="overlaps x partially"):
        step(both[:4], grad, centre, 1 / 255, 8 / 255, out=both[1:5])
    # Disjoint rows of one buffer are fine.
    assert_bits_equal(
        step(both[:4], grad, centre, 1 / 255, 8 / 255, out=both[4:]),
        reference(x, grad, centre, 1 / 255, 8 / 255),
    )


def test_selection() -> None:
    assert available_implementations()[0] == "torch"
    assert select("torch") is reference
    with pytest.raises(ValueError, match="unknown implementation"):
        select("opencl")


@pytest.mark.skipif(
    torch.cuda.is_available() or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1",
    reason="a GPU or the CUDA simulator is present, so the GPU implementations may run",
)
def test_gpu_implementations_refuse_without_a_gpu() -> None:
    with pytest.raises(ImplementationUnavailable, match="cuda-source needs"):
        select("cuda-source")
    if "cpu-fused" in available_implementations():  # numba is installed
        with pytest.raises(ImplementationUnavailable, match="NUMBA_ENABLE_CUDASIM=1"):
            select("numba-cuda")
    assert "numba-cuda" not in available_implementations()
    assert "cuda-source" not in available_implementations()


_SIMULATOR_SCRIPT = """
import sys, torch
from camo_engine.kernels import _ifgsm_numba_cuda, ifgsm_step
x, grad, centre = torch.load(sys.argv[1])
assert "numba-cuda" in ifgsm_step.available_implementations()
default = ifgsm_step.select("numba-cuda")(x, grad, centre, {alpha}, {eps})
# Two blocks of 32 threads for all elements: each thread takes several turns of the stride loop.
strided = torch.empty_like(x)
_ifgsm_numba_cuda.launch(x, grad, centre, {alpha}, {eps}, strided, blocks=2, threads=32)
torch.save([default, strided], sys.argv[2])
"""


@needs_numba
@pytest.mark.slow
def test_numba_cuda_under_the_simulator(tmp_path: Path) -> None:
    """The CUDA kernel on numba's simulator (set before numba loads, hence a subprocess)."""
    alpha, eps = 1 / 255, 8 / 255
    inputs = edge_case((3, 11, 13), alpha, eps)
    torch.save(inputs, tmp_path / "in.pt")
    script = textwrap.dedent(_SIMULATOR_SCRIPT).format(alpha=alpha, eps=eps)
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "in.pt"), str(tmp_path / "out.pt")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    expected = reference(*inputs, alpha, eps)
    for result in torch.load(tmp_path / "out.pt"):
        assert_bits_equal(result, expected)


def _check_ptx(ptx: str) -> None:
    assert ".entry sign_step_project(" in ptx
    # An FMA would round x - alpha*sign once instead of twice, unlike the reference.
    assert "fma." not in ptx
    assert "sub.rn.f32" in ptx and "add.rn.f32" in ptx


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH: .cu not compiled")
def test_cuda_source_compiles_with_nvcc(tmp_path: Path) -> None:
    """Compiled only: no GPU in this project to run it on."""
    ptx = tmp_path / "ifgsm_step.ptx"
    subprocess.run(
        ["nvcc", "--ptx", "-arch=compute_75", str(KERNELS / "ifgsm_step.cu"), "-o", str(ptx)],
        check=True,
        timeout=300,
    )
    _check_ptx(ptx.read_text())


def test_cuda_source_compiles_with_nvrtc() -> None:
    """The loader's own compile step (NVRTC needs no GPU); loading and launching would."""
    pytest.importorskip("cuda.bindings.nvrtc", reason="cuda-bindings is not installed")
    from camo_engine.kernels import _ifgsm_cuda_source
    from cuda.pathfinder import DynamicLibNotFoundError

    try:
        ptx = _ifgsm_cuda_source.compile_ptx("compute_75")
    except DynamicLibNotFoundError as exc:
        pytest.skip(f"the NVRTC library is not installed: {exc}")
    _check_ptx(ptx.rstrip(b"\0 ").decode())
