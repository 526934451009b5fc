"""NIQE as a victim, and ensembles of quality models (issue 12, part 5): the victim against the
numpy reference (scikit-video's maths) on clean and on attacked, written files; the ensemble's
loss, gradient and verdict; ensembles with a user's ONNX model; evaluate's per-member rows."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from camo_engine import Protector
from camo_engine.backends import make_backend
from camo_engine.cli.evaluate import load_victims
from camo_engine.io import jpeg
from camo_engine.measure import appeal
from camo_engine.victims import load_victim, needs_weights
from camo_engine.victims import niqe as niqe_module
from camo_engine.victims.ensemble import QualityEnsemble
from PIL import Image
from torch import nn


def thumbnail(rgb: np.ndarray, side: int) -> np.ndarray:
    im = Image.fromarray(rgb)
    im.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(im)


def written(rgb: np.ndarray, quality: int = 90) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def victim_score(victim, rgb: np.ndarray) -> float:
    with torch.no_grad():
        return float(victim(jpeg.to_float(rgb)[None])[0])


def reference_niqe(rgb: np.ndarray) -> float:
    return appeal.niqe(appeal.luminance(rgb))


@pytest.fixture(scope="module")
def niqe():
    return load_victim("niqe")


@pytest.mark.parametrize("name", ["chelsea", "coffee", "rocket"])
def test_niqe_victim_matches_the_reference_on_photos(photos, niqe, name) -> None:
    rgb = photos[name]
    assert victim_score(niqe, rgb) == pytest.approx(reference_niqe(rgb), abs=0.05)


@pytest.mark.slow
def test_niqe_victim_matches_the_reference_on_attacked_written_files(photos, niqe) -> None:
    """The cross-check on attacked inputs: a photo attacked through NIQE, written as JPEG 90 and
    re-encoded at 75, scored by the victim and by the numpy reference."""
    photo = thumbnail(photos["coffee"], 320)
    [result] = Protector("niqe", strength="low").protect([photo])
    uploaded = written(result.rgb)
    assert reference_niqe(uploaded) > reference_niqe(written(photo)) + 1  # the attack moved it
    for rgb in (uploaded, written(uploaded, 75)):
        # 0.5%: the grid shape against Newton's, and float32 sums in another order, weigh more
        # with the few patches of a 320-px photo (6 here).
        assert victim_score(niqe, rgb) == pytest.approx(reference_niqe(rgb), rel=5e-3)


def test_niqe_gradient_raises_the_score(photos, niqe) -> None:
    x = jpeg.to_float(thumbnail(photos["chelsea"], 320)).requires_grad_(True)
    score = niqe(x[None])[0]
    score.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    stepped = (x + 2 / 255 * x.grad.sign()).clamp(0, 1).detach()
    with torch.no_grad():
        assert float(niqe(stepped[None])[0]) > float(score) + 0.1


def test_niqe_bands_give_the_whole_image_result(photos, niqe, monkeypatch) -> None:
    """Bands of patch rows (recomputed in the backward pass) change neither score nor gradient."""
    x = jpeg.to_float(photos["coffee"])[None]

    def score_and_grad():
        y = x.clone().requires_grad_(True)
        s = niqe(y)[0]
        s.backward()
        return float(s), y.grad

    whole, whole_grad = score_and_grad()
    monkeypatch.setattr(niqe_module, "BAND_PIXELS", 1)  # one patch row per band
    banded, banded_grad = score_and_grad()
    assert banded == pytest.approx(whole, rel=1e-5)
    assert torch.allclose(banded_grad, whole_grad, rtol=1e-4, atol=1e-6 * float(whole_grad.abs().max()))


def test_niqe_reads_small_photos_upscaled(niqe) -> None:
    x = torch.rand(1, 3, 120, 90, requires_grad=True)
    score = niqe(x)[0]
    score.backward()
    assert torch.isfinite(score) and torch.isfinite(x.grad).all()


@pytest.fixture(scope="module")
def ensemble():
    return load_victim("brisque+niqe")


def test_ensemble_names_members_and_readings(ensemble) -> None:
    assert isinstance(ensemble, QualityEnsemble)
    assert ensemble.name == "brisque+niqe" and [m.name for m in ensemble.members] == ["brisque", "niqe"]
    # Every member's deployments, each once.
    assert ensemble.deployment_readings == ("own", "fixed:512x384", "gray8")


def test_ensemble_backend_gradient_is_autograd_through_the_members(photos, ensemble) -> None:
    x = jpeg.to_float(thumbnail(photos["astronaut"], 256))[None]
    targets = ensemble.reference(torch.zeros(1, 2), torch.zeros(1, 2))
    step = make_backend("torch", ensemble).step(x, targets)
    y = x.clone().requires_grad_(True)
    loss = ensemble.loss(ensemble.network(y), targets)
    loss.sum().backward()
    assert step.loss.item() == pytest.approx(loss.item(), rel=1e-5)
    assert float((step.grad - y.grad).norm() / y.grad.norm()) < 1e-4


def test_ensemble_verdict_needs_every_member_and_leaves_a_finished_member_alone(ensemble) -> None:
    targets = torch.tensor([[70.0, 25.0]] * 3)
    outputs = torch.tensor([[55.0, 20.0], [55.0, 10.0], [75.0, 30.0]])
    assert ensemble.is_protected(outputs, targets).tolist() == [True, False, True]
    assert ensemble.past_target(outputs, targets).tolist() == [False, False, True]
    weights = ensemble.push_weights(outputs, targets)
    assert weights[2].tolist() == [0, 0]  # both past their targets: no pull back
    assert weights[0, 0] == pytest.approx(1 / 20**2) and weights[0, 1] == pytest.approx(1 / 7**2)
    # The worst member's margin: NIQE at 10 is 8/7 of its margin from its threshold.
    assert ensemble.margin(outputs, targets)[1].item() == pytest.approx(8 / 7)


def test_ensemble_spellings_and_errors() -> None:
    assert needs_weights("brisque+koncept512") and not needs_weights("brisque+niqe")
    with pytest.raises(ValueError, match="combines quality models"):
        load_victim("brisque+efficientnet-lite0")
    with pytest.raises(ValueError, match="top_k cannot be set for an ensemble"):
        load_victim("brisque+niqe", top_k=2)
    with pytest.raises(ValueError, match="only one member can take --weights"):
        load_victim("koncept512+nima", weights=Path("x.pth"))
    with pytest.raises(ValueError, match="no member takes --weights"):
        load_victim("brisque+niqe", weights=Path("x.pth"))


class TinyRegressor(nn.Module):
    """A user's quality model, exported to ONNX by the test: a score from a small convolution."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 50 + 40 * torch.tanh(self.head(torch.relu(self.conv(x)).mean((2, 3)))).squeeze(1)

    def network(self, x: torch.Tensor) -> torch.Tensor:  # what the exporter traces
        return self(x)


@pytest.mark.slow
def test_ensemble_with_a_users_onnx_model_runs_it_on_onnxruntime(tmp_path, photos) -> None:
    from camo_engine.export.trace import forward_function, to_onnx, trace

    model = TinyRegressor().eval()
    path = tmp_path / "quality.onnx"
    example = torch.rand(2, 3, 40, 48)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        to_onnx(trace(forward_function(model), (example,)), (example,), ["input"], ["score"], path, opset=18, ir_version=10)
    config = {"kind": "regressor", "height": 40, "width": 48, "threshold": 40, "target": 30, "higher_is_worse": False}
    path.with_name(path.name + ".json").write_text(json.dumps(config))

    ensemble = load_victim(f"brisque+onnx:{path}")
    backend = make_backend("torch", ensemble)
    assert backend.name == "torch+onnxruntime"
    x = jpeg.to_float(thumbnail(photos["chelsea"], 200))[None]
    targets = ensemble.reference(torch.zeros(1, 2), torch.zeros(1, 2))
    step = backend.step(x, targets)

    # The same ensemble with the user's model run by torch autograd.
    brisque, user = ensemble.members
    y = x.clone().requires_grad_(True)
    with torch.no_grad():
        assert step.outputs[0, 1].item() == pytest.approx(model(user.preprocess(x[0])[None]).item(), abs=1e-4)
    outputs = torch.stack([brisque(y), model(user.preprocess(y[0])[None])], 1)
    ensemble.loss(outputs, targets).sum().backward()
    assert float((step.grad - y.grad).norm() / y.grad.norm()) < 1e-3


@pytest.mark.slow
def test_protect_with_an_ensemble_pushes_every_member_and_reports_each(photos) -> None:
    photo = thumbnail(photos["coffee"], 320)
    protector = Protector("brisque+niqe", strength="low")
    [result] = protector.protect([photo])
    before = dict(part.split("=") for part in result.before.split())
    after = dict(part.split("=") for part in result.after.split())
    assert set(before) == {"brisque", "niqe"}
    assert float(after["brisque"]) > float(before["brisque"]) + 10
    assert float(after["niqe"]) > float(before["niqe"])
    # Judged independently: the numpy NIQE of the written file moved too.
    assert reference_niqe(written(result.rgb)) > reference_niqe(written(photo))


def test_evaluate_judges_an_ensembles_members_alone_too() -> None:
    victims, failed = load_victims(["brisque+niqe"], None)
    assert not failed
    assert list(victims) == ["brisque+niqe", "brisque", "niqe"]


@pytest.mark.slow
def test_evaluate_cli_gives_rows_for_the_ensemble_and_each_member(tmp_path, photos) -> None:
    from camo_engine.cli import app
    from typer.testing import CliRunner

    for folder, rgb in (("in", thumbnail(photos["coffee"], 256)), ("out", written(thumbnail(photos["coffee"], 256), 30))):
        (tmp_path / folder).mkdir()
        Image.fromarray(rgb).save(tmp_path / folder / "coffee.png")
    args = ["evaluate", str(tmp_path / "in"), str(tmp_path / "out"), "-v", "brisque+niqe", "--panel", "low"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "eval"), "--plots", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "eval" / "verdicts.csv").read_text().splitlines()
    assert {line.split(",")[1] for line in rows[1:]} == {"brisque+niqe", "brisque", "niqe"}
    assert sorted(p.name for p in (tmp_path / "plots").glob("scores_*.png")) == ["scores_brisque.png", "scores_niqe.png"]
