"""The amortised protector: bounded outputs, checkpoints, ONNX, training, and I-FGSM from its output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import typer
from camo_engine.attack import strength_config
from camo_engine.amortised import (
    AmortisedNet,
    amortised_inits,
    amortised_starts,
    export_amortised_onnx,
    load_amortised,
    save_amortised,
)
from camo_engine.amortised.train import (
    TrainConfig,
    attack_loss,
    clean_targets,
    new_amortised,
    random_crops,
    train_protector,
)
from camo_engine.attack import IFGSM
from camo_engine.backends import TorchBackend
from camo_engine.cli import app
from camo_engine.cli.train import train_protector_command
from camo_engine.io import jpeg
from camo_engine.io.report import read_rows
from camo_engine.protector import Protector
from camo_engine.victims import load_victim
from camo_engine.victims.checkpoint import CheckpointError
from PIL import Image
from typer.testing import CliRunner

EPS = 8 / 255
ODD_SIZES = [(1, 1), (5, 7), (37, 53)]


def tiny_net(enhance: bool = False, working_side: int | None = None, seed: int = 0) -> AmortisedNet:
    """A two-level net whose heads are randomised, so that its output is not the identity."""
    torch.manual_seed(seed)
    net = AmortisedNet(EPS, widths=(4, 8), enhance=enhance, working_side=working_side)
    torch.nn.init.normal_(net.head.weight, std=2.0)
    torch.nn.init.normal_(net.head.bias, std=1.0)
    return net.eval()


@pytest.fixture(scope="module")
def lite0():
    return load_victim("efficientnet-lite0")


@pytest.fixture(scope="module")
def tensors(small_photos: list[np.ndarray]) -> list[torch.Tensor]:
    return [jpeg.to_float(rgb) for rgb in small_photos]


# -- the net ------------------------------------------------------------------------------------
def test_untrained_enhancement_is_the_identity() -> None:
    x = torch.rand(2, 3, 9, 11)
    with torch.no_grad():
        centre, out = AmortisedNet(widths=(4, 8, 16), enhance=True).split(x)
    assert torch.equal(centre, x) and not torch.equal(out, x)


@pytest.mark.parametrize("enhance", [False, True])
@pytest.mark.parametrize("size", ODD_SIZES)
def test_output_is_inside_the_eps_ball_and_range(size: tuple[int, int], enhance: bool) -> None:
    net = tiny_net(enhance)
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        centre, out = net.split(x)
    assert out.shape == x.shape == centre.shape
    assert out.min() >= 0 and out.max() <= 1
    assert (out - centre).abs().max() <= EPS + 1e-6
    assert (out - centre).abs().max() > EPS / 2, "the randomised heads should perturb"
    if not enhance:
        assert torch.equal(centre, x)


def test_working_resolution_keeps_full_size_and_the_bound() -> None:
    net = tiny_net(working_side=16)
    image = torch.rand(3, 48, 70, generator=torch.Generator().manual_seed(2))
    [(centre, init)] = list(amortised_starts(net, [image]))
    [(_, full)] = list(amortised_starts(net, [image], full_resolution=True))
    assert init.shape == full.shape == image.shape and torch.equal(centre, image)
    assert (init - image).abs().max() <= EPS + 1e-6
    assert not torch.equal(init, full), "the net should have run at its working side"
    # A photo already within the working side runs as is.
    small = image[:, :16, :20]
    with torch.no_grad():
        assert torch.equal(next(amortised_inits(net, [small])), net(small[None])[0])


def test_inits_of_an_enhancing_net_need_their_centres() -> None:
    with pytest.raises(ValueError, match="amortised_starts"):
        amortised_inits(tiny_net(enhance=True), [torch.rand(3, 8, 8)])


# -- checkpoints and ONNX -----------------------------------------------------------------------
def test_save_load_round_trip(tmp_path: Path) -> None:
    net = tiny_net(enhance=True, working_side=96)
    path = save_amortised(net, tmp_path / "p.pt", {"victim": "efficientnet-lite0", "eps": EPS})
    loaded, meta = load_amortised(path)
    assert loaded.config == net.config
    assert meta["victim"] == "efficientnet-lite0" and "torch" in meta["versions"]
    x = torch.rand(1, 3, 13, 17)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def test_bad_checkpoints_raise_clear_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_amortised(garbage)
    with pytest.raises(CheckpointError, match="no such file"):
        load_amortised(tmp_path / "missing.pt")
    bare = tmp_path / "bare.pt"
    torch.save(tiny_net().state_dict(), bare)
    with pytest.raises(CheckpointError, match="not a camo-engine protector"):
        load_amortised(bare)
    path = save_amortised(tiny_net(), tmp_path / "p.pt", {})
    # Header says (4, 8); weights of another width do not fit.
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"] = AmortisedNet(widths=(4, 16)).state_dict()
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="do not fit the stored architecture"):
        load_amortised(path)


@pytest.mark.slow
@pytest.mark.parametrize("enhance", [False, True])
def test_onnx_export_matches_torch_at_other_sizes(tmp_path: Path, enhance: bool) -> None:
    net = tiny_net(enhance)
    path = tmp_path / "p.onnx"
    assert export_amortised_onnx(net, path) <= 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(3, 3, 21, 30)  # batch, height and width unlike the traced example
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, net(x).numpy(), atol=1e-4, rtol=0)


# -- training -----------------------------------------------------------------------------------
def test_random_crops_are_seeded(tensors: list[torch.Tensor]) -> None:
    def crops(seed: int) -> torch.Tensor:
        return random_crops(tensors, 3, 24, torch.Generator().manual_seed(seed))

    assert crops(0).shape == (3, 3, 24, 24)
    assert torch.equal(crops(0), crops(0)) and not torch.equal(crops(0), crops(1))


def test_enhancer_training_needs_a_reconstruction_weight(lite0, tensors) -> None:
    with pytest.raises(ValueError, match="recon_weight"):
        train_protector(lite0, tensors, TrainConfig(steps=1), enhance=torch.nn.Identity())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_training_step_descends_the_attack_loss_on_its_batch(lite0, tensors, seed: int) -> None:
    """One small optimiser step lowers the attack loss on the crops it was taken on.

    Without the JPEG stand-in: kornia's differentiable JPEG gives a gradient that can disagree
    in sign with finite differences, so a step through it need not descend (a 12-step run
    through JPEG 90 lowered the loss for some seeds and not others).
    """
    config = TrainConfig(steps=1, batch_size=4, crop=96, lr=1e-3, widths=(8, 16), seed=seed, jpeg_quality=None)
    net = train_protector(lite0, tensors, config)
    # The very crops training drew: the same generator, drawn in the same order.
    crops = random_crops(tensors, config.batch_size, config.crop, torch.Generator().manual_seed(config.seed))
    targets = clean_targets(lite0, crops)
    with torch.no_grad():
        before = attack_loss(lite0, new_amortised(config)(crops), targets, None).mean()
        after = attack_loss(lite0, net(crops), targets, None).mean()
    assert after < before, (float(before), float(after))


# -- protection: I-FGSM from the protector's output ---------------------------------------------
def test_ifgsm_starts_from_the_protector_and_judges_after_jpeg(lite0, tensors) -> None:
    images = tensors[:2]
    net = tiny_net()
    attack = IFGSM(lite0, TorchBackend(lite0), strength_config("low", steps=2))
    results = sorted(attack.run(images, inits=amortised_inits(net, images)), key=lambda r: r.index)
    assert [r.index for r in results] == [0, 1]
    for r, image in zip(results, images):
        assert 0 <= r.steps <= 2
        original = jpeg.to_uint8(image).astype(int)
        assert np.abs(r.rgb.astype(int) - original).max() <= round(EPS * 255) + 1
        # The written JPEG 90 file, re-encoded by the platform at 90: the low panel's one view.
        seen = jpeg.to_float(jpeg.roundtrip(jpeg.roundtrip(r.rgb, 90), 90))
        assert lite0.describe(lite0(seen[None])) == lite0.describe(r.after.outputs)


def test_zero_finishing_steps_return_the_protector_output(lite0, tensors) -> None:
    images = tensors[:2]
    net = tiny_net()
    attack = IFGSM(lite0, TorchBackend(lite0), strength_config("low", steps=0))
    results = sorted(attack.run(images, inits=amortised_inits(net, images)), key=lambda r: r.index)
    for r, init in zip(results, amortised_inits(net, images)):
        assert r.steps == 0
        np.testing.assert_array_equal(r.rgb, jpeg.to_uint8(init))


# -- protect --protector: the protector's output, finished by I-FGSM only where it failed ----------
# BRISQUE at native size with a threshold inside the small photos' range (the tiny protector's
# outputs score -1 to 18 after the written JPEG and a JPEG 90 re-encode): it crosses it on some
# photos and not on others, so both routes are exercised.
THRESHOLD = 16
BRISQUE_SPLIT = ["-v", "brisque", "--strength", "low", "--threshold", str(THRESHOLD), "--target", "30"]


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, small_photos) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i, rgb in enumerate(small_photos[:5]):
        Image.fromarray(rgb).save(folder / f"photo{i}.png")
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_amortised(tiny_net(), tmp_path_factory.mktemp("net") / "brisque.pt", {"victim": "brisque"})


def protect_rows(folder: Path, out: Path, *args: str) -> dict[str, dict]:
    result = CliRunner().invoke(app, ["protect", str(folder), "-o", str(out), *BRISQUE_SPLIT, *args])
    assert result.exit_code == 0, result.output
    return {Path(row["input"]).name: row for row in read_rows(out)}


@pytest.mark.slow
def test_protect_with_a_protector_finishes_only_what_it_left(tmp_path, photo_folder, checkpoint) -> None:
    alone = protect_rows(photo_folder, tmp_path / "alone", "--protector", str(checkpoint))
    assert {row["method"] for row in alone.values()} == {"protector"}
    assert all(row["steps"] == 0 for row in alone.values())
    by_protector = {name for name, row in alone.items() if row["protected"]}
    assert 0 < len(by_protector) < len(alone), "the threshold should split the photos"

    finished = protect_rows(
        photo_folder, tmp_path / "finished", "--protector", str(checkpoint), "--finish-steps", "3"
    )
    for name, row in finished.items():
        if name in by_protector:
            # Already protected: no step, and the very bytes of the protector-only run.
            assert row["steps"] == 0 and row["method"] == "protector" and row["protected"]
            assert Path(row["output"]).read_bytes() == Path(alone[name]["output"]).read_bytes()
        else:
            assert 1 <= row["steps"] <= 3 and row["method"] == "protector+i-fgsm"
        assert row["before"] == alone[name]["before"] and row["linf"] <= 8
    assert sum(row["protected"] for row in finished.values()) > len(by_protector)
    # The verdicts are the victim's on the written JPEG re-encoded at 90 (the low panel's one
    # view), both routes.
    victim = load_victim("brisque", threshold=THRESHOLD, target=30)
    for row in [*alone.values(), *finished.values()]:
        written = np.asarray(Image.open(row["output"]).convert("RGB"))
        score = float(victim(jpeg.to_float(jpeg.roundtrip(written, 90))[None])[0])
        assert score == pytest.approx(row["after"], abs=1e-3) and row["protected"] == (score >= THRESHOLD)


def test_a_protector_for_another_victim_is_a_clear_error(tmp_path, photo_folder) -> None:
    path = save_amortised(tiny_net(), tmp_path / "lite0.pt", {"victim": "efficientnet-lite0"})
    result = CliRunner().invoke(app, ["protect", str(photo_folder), "-o", str(tmp_path / "o"),
                                      *BRISQUE_SPLIT, "--protector", str(path)])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "lite0.pt" in text and "trained against 'efficientnet-lite0', not 'brisque'" in text
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("garbage.pt", b"not a checkpoint", "not a readable torch checkpoint"),
        ("empty.pt", b"", "the file is empty"),
        ("missing.pt", None, "no such file"),
        ("export.onnx", b"onnx bytes", "records no victim"),
    ],
)
def test_a_bad_protector_file_is_a_clear_error(tmp_path, photo_folder, name, content, reason) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    result = CliRunner().invoke(app, ["protect", str(photo_folder), "-o", str(tmp_path / "o"),
                                      *BRISQUE_SPLIT, "--protector", str(path)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and name in text and reason in text, text


def test_protector_options_that_do_not_fit_are_errors(checkpoint) -> None:
    with pytest.raises(ValueError, match="trained for eps 8/255 but the attack.s eps is 4/255"):
        Protector("brisque", config=strength_config("low", eps=4 / 255), amortised=checkpoint)
    with pytest.raises(ValueError, match="finish_steps needs a protector"):
        Protector("brisque", finish_steps=3)
    with pytest.raises(ValueError, match="cannot attack through"):
        Protector("brisque", enhance="pillow", through=True, amortised=checkpoint)
    with pytest.raises(ValueError, match="its own head"):
        Protector("brisque", enhance="pillow", amortised=tiny_net(enhance=True))
    for args in (["--finish-steps", "2"], ["--protector", str(checkpoint), "--steps", "5"]):
        result = CliRunner().invoke(app, ["protect", "--samples", *args])
        assert result.exit_code == 2


# -- the command ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_train_protector_command_writes_checkpoint_and_onnx(tmp_path: Path, small_photos) -> None:
    photo = tmp_path / "photo.png"
    Image.fromarray(small_photos[0]).save(photo)
    app = typer.Typer()
    app.command()(train_protector_command)
    out = tmp_path / "lite0.pt"
    args = [str(photo), "-v", "efficientnet-lite0", "--steps", "1", "--batch-size", "1",
            "--crop", "32", "--eps", "4/255", "--enhance", "pillow", "--recon-weight", "5", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    model, meta = load_amortised(out)
    assert out.with_suffix(".onnx").is_file()
    assert model.eps == pytest.approx(4 / 255) and model.working_side == 32 and model.enhance
    assert meta["victim"] == "efficientnet-lite0" and meta["enhance"] == "pillow"
    assert meta["training"]["steps"] == 1


def test_train_protector_command_rejects_bad_options(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(train_protector_command)
    result = CliRunner().invoke(app, ["-v", "nope", "-o", str(tmp_path / "p.pt")])
    assert result.exit_code == 2 and "unknown victim" in result.output
