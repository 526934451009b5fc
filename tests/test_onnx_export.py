"""Export of torch victims to checked ONNX forward/gradient graphs."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys

import onnx
import onnxruntime as ort
import pytest
import torch
from camo_engine.export import cache
from camo_engine.export.check import MAX_REL_ERR, CheckResult, ExportCheckError, check_graphs
from camo_engine.export.decompositions import avg_pool2d_backward, digamma, lgamma
from camo_engine.export.examples import example_batch, example_targets
from camo_engine.export.fold import fold_batchnorm, fold_module
from camo_engine.export.manifest import Manifest, ManifestError, victim_fields
from onnx_cases import (  # noqa: F401
    TinyClassifier,
    brisque,
    efficientnet,
    exported,
    onnx_cache,
    places365,
)


def test_special_functions_match_torch() -> None:
    x = torch.logspace(-1.4, 1.8, 500, dtype=torch.float64)
    assert (lgamma(x) - torch.lgamma(x)).abs().max() < 1e-7
    assert (digamma(x) - torch.digamma(x)).abs().max() < 1e-7


@pytest.mark.parametrize(
    "size, kernel, stride, padding, include_pad, divisor",
    [
        ((10, 14), [8, 8], [], [0, 0], False, None),  # KonCept512's 8x8 window of a 10x14 map
        ((9, 11), [3, 3], [1, 1], [1, 1], False, None),  # InceptionResNetV2's branch pool
        ((9, 11), [3, 3], [2, 2], [1, 1], True, None),
        ((9, 11), [2, 3], [2, 1], [0, 0], True, 5),
    ],
)
def test_avg_pool_backward_matches_autograd(size, kernel, stride, padding, include_pad, divisor) -> None:
    x = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    out = torch.nn.functional.avg_pool2d(x, kernel, stride or None, padding, False, include_pad, divisor)
    grad_out = torch.randn_like(out)
    (expected,) = torch.autograd.grad(out, x, grad_out)
    got = avg_pool2d_backward(grad_out, x.detach(), kernel, stride, padding, False, include_pad, divisor)
    torch.testing.assert_close(got, expected)


def test_fold_batchnorm_keeps_outputs_and_removes_bn() -> None:
    victim = TinyClassifier()
    folded = fold_batchnorm(victim)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in victim.modules())  # original untouched
    x = torch.randn(3, 3, 33, 33)
    torch.testing.assert_close(folded.network(x), victim.network(x), rtol=1e-5, atol=1e-5)


def test_fold_turns_a_batchnorm_after_an_activation_into_an_affine_map() -> None:
    torch.manual_seed(0)
    head = torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.BatchNorm1d(8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1)
    ).eval()
    head[2].running_mean.uniform_(-1, 1)
    head[2].running_var.uniform_(0.5, 2.0)
    folded = fold_module(head)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    x = torch.randn(5, 6)
    torch.testing.assert_close(folded(x), head(x))


def _edited_victim(tmp_path, monkeypatch):
    """A TinyClassifier subclass defined in a file of its own, which the test can edit."""
    path = tmp_path / "edited_victim.py"
    path.write_text("from onnx_cases import TinyClassifier\n\n\nclass Edited(TinyClassifier):\n    name = 'edited'\n")
    spec = importlib.util.spec_from_file_location("edited_victim", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "edited_victim", module)
    spec.loader.exec_module(module)
    return module.Edited(), path


def test_cache_key_follows_the_code_that_defines_the_graphs(tmp_path, monkeypatch) -> None:
    """Editing the victim's module or the exporter gives a new key, and so a new export."""
    victim, path = _edited_victim(tmp_path, monkeypatch)
    sources = cache.graph_sources(victim)
    assert sources["edited_victim"] == path and "onnx_cases" in sources
    assert {"camo_engine.victims.objectives", "camo_engine.export.trace", "camo_engine.export.onnx_grad_rules"} <= set(sources)

    exports: list[str] = []

    def fake_export(directory):  # a valid, empty entry: the key is under test, not the export
        exports.append(directory.name)
        Manifest(victim_fields(victim), {}, [], 18, 10, True, {}, {}).write(directory)

    first = cache.cached_export(victim, tmp_path / "cache", fake_export, {})
    assert cache.cached_export(victim, tmp_path / "cache", fake_export, {}) == first and len(exports) == 1
    path.write_text(path.read_text() + "# an edit that could change the graph\n")
    second = cache.cached_export(victim, tmp_path / "cache", fake_export, {})
    assert second != first and len(exports) == 2

    exporter = tmp_path / "exporter"
    shutil.copytree(cache._EXPORTER, exporter)
    monkeypatch.setattr(cache, "_EXPORTER", exporter)
    assert cache.cached_export(victim, tmp_path / "cache", fake_export, {}) == second
    with open(exporter / "onnx_grad_rules.py", "a") as f:
        f.write("# a changed gradient rule\n")
    assert cache.cached_export(victim, tmp_path / "cache", fake_export, {}) not in (first, second)
    assert len(exports) == 3


def _check_export(victim, directory) -> Manifest:
    """Manifest contents, IR/opset, no BatchNormalization, and dynamic batch at 1 and 3."""
    manifest = Manifest.read(directory)
    assert manifest.ir_version == 10 and manifest.opset == 18
    assert manifest.victim["name"] == victim.name and manifest.input["layout"] == "NCHW"
    assert set(manifest.versions) >= {"torch", "onnx", "onnxruntime"}
    for pair in manifest.graphs:
        for file in (pair.forward, pair.gradient):
            model = onnx.load(directory / file)
            assert model.ir_version == 10
            assert "BatchNormalization" not in {n.op_type for n in model.graph.node}
            ort.InferenceSession(str(directory / file), providers=["CPUExecutionProvider"])
        for size in (1, 3):
            batch = example_batch(victim, (pair.height, pair.width), size)
            check_graphs(victim, directory / pair.forward, directory / pair.gradient, batch, example_targets(victim, batch))
    return manifest


@pytest.mark.slow
def test_export_tiny(onnx_cache) -> None:
    directory = exported(TinyClassifier(), onnx_cache)
    manifest = _check_export(TinyClassifier(), directory)
    assert [(p.forward, p.gradient) for p in manifest.graphs] == [("forward.onnx", "gradient.onnx")]


@pytest.mark.slow
def test_manifest_rejects_modified_file(onnx_cache, tmp_path) -> None:
    directory = exported(TinyClassifier(), onnx_cache)
    for f in directory.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    with open(tmp_path / "forward.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ManifestError, match="hash does not match"):
        Manifest.read(tmp_path)


@pytest.mark.slow
def test_export_efficientnet(efficientnet, onnx_cache) -> None:
    manifest = _check_export(efficientnet, exported(efficientnet, onnx_cache))
    assert manifest.input["from_rgb"]["formula"] == "(x * 255 - 127) / 128"
    assert len(manifest.victim["categories"]) == 1000


# The one known miss, and nothing else: every other failure (a crash, an opset or manifest
# regression, an error past its limit) fails the test.
PLACES365_SIGN_MISS = (
    "random-init ResNet50 (seed 365), first sample photo alone: onnxruntime's fp32 gradient is "
    "1.1e-2 from fp64 with 99.81% sign agreement (< 99.9%); torch fp32's is 7.0e-3 / 99.98%.  Single "
    "ReLU gates flipped by fp32 rounding, at random: on the second photo torch fp32 is 7.2e-3 / 99.91% "
    "off and onnxruntime 8.7e-5 / 100%.  Batches of 2 and 4 photos pass"
)


@pytest.mark.slow
def test_export_places365_architecture(places365, onnx_cache) -> None:
    try:
        _check_export(places365, exported(places365, onnx_cache))
    except ExportCheckError as exc:
        if exc.result.failed == ("grad_sign_agreement",) and exc.forward_rel_err <= MAX_REL_ERR:
            pytest.xfail(f"{PLACES365_SIGN_MISS}: {exc}")
        raise


def test_check_error_names_what_failed() -> None:
    """What the ResNet50 xfail relies on: a sign-agreement miss alone is told apart from the rest."""
    sign_only = CheckResult(1e-6, 1e-6, 5e-3, 0.998, torch_grad_rel_err=4e-3)
    assert sign_only.failed == ("grad_sign_agreement",) and not sign_only.ok
    assert CheckResult(2e-4, 1e-6, 5e-3, 0.998, 4e-3).failed == ("outputs_rel_err", "grad_sign_agreement")
    assert CheckResult(1e-6, 1e-6, 2e-2, 1.0, 4e-3).failed == ("grad_rel_err",)
    assert CheckResult(1e-6, 1e-6, 1e-5, 1.0).ok


# Exporting BRISQUE's two geometries takes 4 to 8 min here (2 cores, shared): more than the CI
# budget for one test, so it runs with -m extended.
@pytest.mark.extended
def test_export_brisque(brisque, onnx_cache) -> None:
    manifest = _check_export(brisque, exported(brisque, onnx_cache))
    assert {(p.height, p.width) for p in manifest.graphs} == {(384, 512), (512, 384)}
    assert json.loads((exported(brisque, onnx_cache) / "manifest.json").read_text())["input"]["channels"] == 1
