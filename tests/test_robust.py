"""Protection that holds against the adversary's own pipeline (issue 12), checked by code paths
independent of the engine's view code: Pillow encodes and resizes the written file here, a
torchvision-style preprocessing (PIL resize, centre crop) or the float64 BRISQUE reference reads
it, and the verdict is taken against the original seen through the same path."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from brisque_reference import score as reference_brisque
from camo_engine import Protector
from camo_engine.io import jpeg
from camo_engine.threat import Channel, Reading, builtin_panel, load_panel
from PIL import Image


def pil_jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def pil_scale(rgb: np.ndarray, factor: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    return np.asarray(Image.fromarray(rgb).resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.LANCZOS))


# What a platform does to the uploaded file, written independently of camo_engine.threat.
CHANNELS = {
    "as uploaded": lambda rgb: rgb,
    "jpeg 75": lambda rgb: pil_jpeg(rgb, 75),
    "0.5x + jpeg 85": lambda rgb: pil_jpeg(pil_scale(rgb, 0.5), 85),
}


def classifier_reading(kind: str, rgb: np.ndarray) -> torch.Tensor:
    """torchvision's transforms on a PIL image, as a deployment runs them: Resize(256) +
    CenterCrop(224), or Resize((224, 224)); then EfficientNet-Lite0's (x*255-127)/128."""
    im = Image.fromarray(rgb)
    if kind == "crop":
        w, h = im.size
        k = 256 / min(w, h)
        im = im.resize((max(256, round(w * k)), max(256, round(h * k))), Image.BILINEAR)
        left, top = round((im.width - 224) / 2), round((im.height - 224) / 2)
        im = im.crop((left, top, left + 224, top + 224))
    else:
        im = im.resize((224, 224), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255
    return (x * 255 - 127) / 128


def written_file(rgb: np.ndarray) -> np.ndarray:
    """What `protect` writes by default (JPEG 90), decoded: what the user uploads."""
    return np.asarray(Image.open(io.BytesIO(jpeg.encode(rgb, 90))).convert("RGB"))


@pytest.fixture(scope="module")
def two_photos(small_photos):
    return small_photos[1:3]


@pytest.mark.slow
def test_medium_classifier_protection_holds_under_independent_preprocessing(two_photos):
    protector = Protector("efficientnet-lite0")  # medium, the default
    model = protector.victim
    results = protector.protect(two_photos)
    checked = 0
    for original, result in zip(two_photos, results):
        assert result.protected, result.views
        uploaded = written_file(result.rgb)
        for channel in CHANNELS.values():
            for kind in ("crop", "squash"):
                with torch.no_grad():
                    clean = model.network(classifier_reading(kind, original)[None]).argmax(1).item()
                    seen = model.network(classifier_reading(kind, channel(original))[None]).argmax(1).item()
                    after = model.network(classifier_reading(kind, channel(uploaded))[None]).argmax(1).item()
                # Protected: the top-1 left both what the original and its channelled copy showed.
                assert after not in (clean, seen), (kind, result.views)
                checked += 1
    assert checked == 2 * len(CHANNELS) * 2


@pytest.mark.slow
def test_medium_brisque_protection_holds_for_the_float64_reference_at_native_size(small_photos):
    """The attacked, written file scored by the independent float64 BRISQUE at the photo's own
    resolution, after each channel: past the threshold where the original was below it."""
    photo = small_photos[2]
    protector = Protector("brisque")
    [result] = protector.protect([photo])
    assert result.protected, result.views
    uploaded = written_file(result.rgb)
    threshold = protector.victim.threshold
    for name, channel in CHANNELS.items():
        before = reference_brisque(channel(photo) / 255.0)
        after = reference_brisque(channel(uploaded) / 255.0)
        assert before < threshold, name
        assert after >= threshold, (name, before, after)


@pytest.mark.slow
def test_brisque_victim_agrees_with_the_reference_on_attacked_written_files(small_photos):
    """The victim's score of an attacked, written, re-encoded file at native resolution is the
    float64 reference's (the cross-check on attacked inputs, not only clean ones)."""
    protector = Protector("brisque", strength="low")
    [result] = protector.protect([small_photos[0]])
    for rgb in (written_file(result.rgb), pil_jpeg(written_file(result.rgb), 75)):
        with torch.no_grad():
            ours = float(protector.victim(jpeg.to_float(rgb)[None])[0])
        assert ours == pytest.approx(reference_brisque(rgb / 255.0), abs=0.05)


def test_channels_and_readings_match_pillow():
    """The engine's real views are Pillow's own operations (here re-done by hand)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (61, 83, 3), dtype=np.uint8)
    assert np.array_equal(Channel.parse("scale:0.5+jpeg:85").real(rgb), pil_jpeg(pil_scale(rgb, 0.5), 85))
    assert np.array_equal(Channel.parse("long:40:lanczos").real(rgb), np.asarray(Image.fromarray(rgb).resize((40, 29), Image.LANCZOS)))
    crop = Reading.parse("crop:32:bilinear").real(rgb)
    assert tuple(crop.shape) == (3, 32, 32)
    squash = Reading.parse("squash:32:bicubic").real(rgb)
    expected = np.asarray(Image.fromarray(rgb).resize((32, 32), Image.BICUBIC))
    assert torch.equal(squash, jpeg.to_float(expected))


def test_differentiable_stand_ins_track_the_real_views():
    """The gradient's stand-ins are close to the real codecs (they only steer the gradient)."""
    rgb = np.asarray(Image.open(io.BytesIO(jpeg.encode(np.full((64, 96, 3), 128, np.uint8), 95))))
    rng = np.random.default_rng(1)
    rgb = np.clip(rgb.astype(int) + rng.integers(-20, 21, rgb.shape), 0, 255).astype(np.uint8)
    for spec in ("jpeg:75", "scale:0.5+jpeg:85", "long:40:bicubic"):
        channel = Channel.parse(spec)
        real = jpeg.to_float(channel.real(rgb))
        stand_in = channel.torch(jpeg.to_float(rgb)[None])[0]
        assert real.shape == stand_in.shape
        assert (real - stand_in).abs().mean() < 0.02, spec


@pytest.mark.parametrize("band_rows", [16, 48])
def test_banded_jpeg_stand_in_equals_the_whole_photo_call(band_rows):
    """Large photos' JPEG stand-in runs in row bands (bounded memory): same values and the
    same gradient as one call on the whole photo, with a ragged last band and an odd width."""
    from camo_engine.threat.channels import jpeg_torch

    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.random((2, 3, 117, 75), dtype=np.float32)).requires_grad_(True)
    weights = torch.from_numpy(rng.standard_normal((2, 3, 117, 75), dtype=np.float32))
    whole = jpeg_torch(x, 80, band_rows=None)  # 8775 pixels: one call
    (grad_whole,) = torch.autograd.grad((whole * weights).sum(), x)
    banded = jpeg_torch(x, 80, band_rows=band_rows)
    (grad_banded,) = torch.autograd.grad((banded * weights).sum(), x)
    assert torch.allclose(banded, whole, atol=1e-6)
    assert torch.allclose(grad_banded, grad_whole, atol=1e-5)
    # Not banding on macroblock edges would mix blocks: refused.
    with pytest.raises(ValueError, match="multiple of 16"):
        jpeg_torch(x, 80, band_rows=20)


def test_panels_pair_channels_with_the_victims_readings(tmp_path):
    medium = builtin_panel("medium", ("own", "squash:224:bilinear"))
    assert len(medium.views) == 5 * 2 and medium.views[0].name == "none|own"
    assert [v.name for v in builtin_panel("low", ("own",), 85).views] == ["jpeg:85|own"]
    high = builtin_panel("high", ("own",))
    assert {"webp:80|own", "long:640+jpeg:80|own"} <= {v.name for v in high.views}
    (tmp_path / "p.toml").write_text('name = "mine"\nchannels = ["jpeg:70", "long:800+jpeg:80"]\n')
    assert [v.name for v in load_panel(tmp_path / "p.toml", ("own",)).views] == ["jpeg:70|own", "long:800+jpeg:80|own"]
    (tmp_path / "bad.json").write_text('{"views": [{"channel": "jpeg:200"}]}')
    with pytest.raises(ValueError, match="bad.json.*quality"):
        load_panel(tmp_path / "bad.json", ("own",))
    with pytest.raises(ValueError, match="not understood"):
        Channel.parse("blur:3")
