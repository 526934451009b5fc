"""The onnxruntime backend against the torch backend, IO binding, providers, attacks."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from camo_engine.attack import strength_config
from camo_engine.attack import IFGSM
from camo_engine.backends import BACKENDS, TorchBackend, make_backend
from camo_engine.backends.base import Step
from camo_engine.backends import onnxruntime_backend
from camo_engine.backends.onnxruntime_backend import (
    OnnxRuntimeBackend,
    ProviderError,
    select_providers,
)
from camo_engine.export.check import (
    MAX_REL_ERR,
    compare,
    exact_reference,
    relative_error,
)
from camo_engine.export.manifest import Manifest
from camo_engine.export.examples import (
    example_batch,
    example_targets,
    sample_images,
    victim_geometries,
)
from camo_engine.kernels.brisque import plain_formulation
from camo_engine.victims import load_victim
from onnx_cases import (  # noqa: F401
    TinyClassifier,
    brisque,
    efficientnet,
    exported,
    onnx_cache,
    places365,
)


def test_backend_is_registered() -> None:
    assert "onnxruntime" in BACKENDS


def test_unavailable_provider_is_a_clear_error() -> None:
    with pytest.raises(ProviderError, match=r"CUDAExecutionProvider.*available: .*CPUExecutionProvider"):
        select_providers(["CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"])


def test_unavailable_provider_falls_back_to_cpu_with_a_warning() -> None:
    with pytest.warns(RuntimeWarning, match="TensorrtExecutionProvider"):
        chosen = select_providers(["TensorrtExecutionProvider", "CUDAExecutionProvider"], fallback=True)
    assert chosen == ["CPUExecutionProvider"]


class CpuOnlySession:
    """An InferenceSession whose listed GPU provider failed to start: it runs on the CPU alone."""

    def __init__(self, path, sess_options=None, providers=()):
        self.asked = list(providers)

    def get_providers(self):
        return ["CPUExecutionProvider"]


@pytest.mark.parametrize("fallback", [False, True])
def test_listed_provider_that_does_not_start(fallback, tmp_path, monkeypatch) -> None:
    """CUDA is in the build but its session comes up on the CPU: an error, or a warning with fallback."""
    monkeypatch.setattr(onnxruntime_backend.ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime_backend.ort, "InferenceSession", CpuOnlySession)
    Manifest({"name": "tiny", "kind": "classifier"}, {}, [], 18, 10, True, {}, {}).write(tmp_path)
    backend = OnnxRuntimeBackend(tmp_path, providers=["CUDAExecutionProvider"], fallback=fallback)
    assert backend.providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if not fallback:
        with pytest.raises(ProviderError, match=r"gradient\.onnx: execution provider\(s\) CUDAExecutionProvider did not start"):
            backend._session("gradient.onnx")
        assert backend._sessions == {}
        return
    with pytest.warns(RuntimeWarning, match="CUDAExecutionProvider did not start; the session runs on CPUExecutionProvider"):
        session = backend._session("gradient.onnx")
    assert session.asked == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def _agree(victim, backend, batch: torch.Tensor) -> None:
    targets = example_targets(victim, batch)
    with plain_formulation():  # the formulation the graphs were exported from
        reference = TorchBackend(victim).step(batch, targets)
    step = backend.step(batch, targets)
    result = compare(tuple(step), tuple(reference), exact_reference(victim, batch, targets))
    assert result.ok, result
    assert relative_error(backend.outputs(batch), reference.outputs) <= MAX_REL_ERR


@pytest.mark.slow
def test_io_binding_writes_into_preallocated_buffers(onnx_cache) -> None:
    victim = TinyClassifier()
    backend = OnnxRuntimeBackend(exported(victim, onnx_cache), intra_op_threads=1, optimization="basic")
    batch = example_batch(victim, (33, 33), 3)
    targets = example_targets(victim, batch)
    out = Step(torch.full((3, 10), float("nan")), torch.full((3,), float("nan")), torch.full_like(batch, float("nan")))
    step = backend.step(batch, targets, out=out)
    assert step.grad.data_ptr() == out.grad.data_ptr() and step.outputs.data_ptr() == out.outputs.data_ptr()
    assert torch.isfinite(out.grad).all() and torch.isfinite(out.loss).all()
    fresh = backend.step(batch, targets)
    assert torch.equal(fresh.grad, out.grad) and torch.equal(fresh.loss, out.loss)


@pytest.mark.slow
def test_from_victim_exports_once(tmp_path) -> None:
    victim = TinyClassifier()
    first = OnnxRuntimeBackend.from_victim(victim, cache_dir=tmp_path)
    stamp = (first.directory / "gradient.onnx").stat().st_mtime_ns
    second = make_backend("onnxruntime", TinyClassifier(), cache_dir=tmp_path)
    assert second.directory == first.directory
    assert (second.directory / "gradient.onnx").stat().st_mtime_ns == stamp
    other = OnnxRuntimeBackend.from_victim(TinyClassifier(confidence=1.0), cache_dir=tmp_path)
    assert other.directory != first.directory  # the loss is baked in: a new objective re-exports


def _real_batches(victim, size: int = 4):
    images = sample_images()
    for geometry in victim_geometries(victim):
        same = [im for im in images if victim.geometry(*im.shape[1:]) == geometry][:size]
        if same:
            yield torch.stack([victim.preprocess(im) for im in same]).detach()


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "efficientnet",
        "places365",
        pytest.param("brisque", marks=pytest.mark.extended),  # its export takes minutes
    ],
)
def test_onnxruntime_agrees_with_torch_on_photos(name, request, onnx_cache) -> None:
    victim = request.getfixturevalue(name)
    backend = OnnxRuntimeBackend(exported(victim, onnx_cache), intra_op_threads=2)
    for batch in _real_batches(victim):
        _agree(victim, backend, batch)


@pytest.mark.slow
def test_attack_through_onnxruntime_matches_torch(efficientnet, onnx_cache) -> None:
    images = sample_images()
    ort_backend = OnnxRuntimeBackend(exported(efficientnet, onnx_cache), intra_op_threads=2)
    config = strength_config("low")
    by_torch = {r.index: r for r in IFGSM(efficientnet, TorchBackend(efficientnet), config).run(images)}
    by_ort = {r.index: r for r in IFGSM(efficientnet, ort_backend, config).run(images)}
    assert [by_ort[i].protected for i in sorted(by_ort)] == [by_torch[i].protected for i in sorted(by_torch)]
    assert all(abs(by_ort[i].steps - by_torch[i].steps) <= 1 for i in by_torch)


def test_onnx_file_victim_refuses_the_torch_backend(tmp_path) -> None:
    path = _tiny_onnx_file(tmp_path)
    victim = load_victim(f"onnx:{path}")
    with pytest.raises(ValueError, match="use --backend onnxruntime"):
        make_backend("torch", victim)


@pytest.mark.slow
def test_onnx_file_victim_runs_on_onnxruntime(tmp_path) -> None:
    """A user's file plus its JSON config: outputs like the torch model, a usable gradient."""
    path = _tiny_onnx_file(tmp_path)
    victim = load_victim(f"onnx:{path}", top_k=1)
    assert victim.kind == "classifier" and victim.geometry(100, 50) == (33, 33)
    backend = make_backend("onnxruntime", victim, cache_dir=tmp_path / "cache")
    tiny = TinyClassifier()
    batch = example_batch(tiny, (33, 33), 2)
    _agree(tiny, backend, batch)
    manifest = json.loads((backend.directory / "manifest.json").read_text())
    assert manifest["input"]["from_rgb"]["std"] == pytest.approx([0.5])


@pytest.mark.slow
def test_protect_picks_onnxruntime_for_an_onnx_file(tmp_path, small_photos, monkeypatch) -> None:
    """`--victim onnx:PATH` runs on onnxruntime with a one-line notice; an explicit
    `--backend torch` is refused with the reason."""
    from camo_engine.cli import app
    from camo_engine.io.report import read_rows
    from PIL import Image
    from typer.testing import CliRunner

    path = _tiny_onnx_file(tmp_path)
    (tmp_path / "in").mkdir()
    Image.fromarray(small_photos[0]).save(tmp_path / "in" / "photo.png")
    args = ["protect", str(tmp_path / "in"), "-v", f"onnx:{path}", "--steps", "2", "--onnx-cache", str(tmp_path / "cache")]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    # rich wraps long lines, here inside the notice when tmp_path is long
    assert "runs on --backend onnxruntime (picked for an ONNX file)" in " ".join(result.output.split())
    [row] = read_rows(tmp_path / "out")
    assert row["status"] == "ok" and Path(row["output"]).is_file()

    refused = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "out2"), "--backend", "torch"])
    assert refused.exit_code == 2
    assert "torch autograd cannot run" in " ".join(refused.output.split()) and not (tmp_path / "out2").exists()

    # evaluate has no --backend: it runs such a victim on onnxruntime too (default export cache).
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    evaluated = CliRunner().invoke(app, ["evaluate", str(tmp_path / "in"), str(tmp_path / "out"), "-v", f"onnx:{path}", "--jpeg", "90", "--resize", ""])
    assert evaluated.exit_code == 0, evaluated.output
    assert "victim onnx" not in evaluated.output  # no "victim ... skipped" line
    assert list((tmp_path / "xdg" / "camo-engine" / "onnx").iterdir())


def _tiny_onnx_file(tmp_path):
    """TinyClassifier's exported forward graph with a config saying how to feed it."""
    import shutil

    from camo_engine.export.trace import forward_function, to_onnx, trace

    path = tmp_path / "tiny.onnx"
    victim = TinyClassifier()
    batch = torch.rand(2, 3, 33, 33) * 2 - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        to_onnx(trace(forward_function(victim), (batch,)), (batch,), ["input"], ["logits"], path, opset=18, ir_version=10)
    (tmp_path / "tiny.onnx.json").write_text(json.dumps({"height": 33, "width": 33, "mean": [0.5], "std": [0.5]}))
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["efficientnet-lite0", pytest.param("brisque", marks=pytest.mark.extended)])
def test_protect_cli_gives_the_same_verdicts_on_both_backends(victim, onnx_cache, tmp_path) -> None:
    """``camo-engine protect --samples``: the same successes and steps within +-1 per photo."""
    from camo_engine.cli import app
    from camo_engine.io.report import read_rows
    from typer.testing import CliRunner

    rows = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / backend
        args = ["protect", "--samples", "-o", str(out), "-v", victim, "--strength", "low", "--backend", backend, "--onnx-cache", str(onnx_cache)]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        rows[backend] = {Path(r["input"]).name: r for r in read_rows(out)}
    assert rows["torch"].keys() == rows["onnxruntime"].keys() and rows["torch"]
    for name, row in rows["torch"].items():
        other = rows["onnxruntime"][name]
        assert row["status"] == other["status"] == "ok", (name, row["error"], other["error"])
        assert other["protected"] == row["protected"], name
        assert abs(other["steps"] - row["steps"]) <= 1, (name, row["steps"], other["steps"])
