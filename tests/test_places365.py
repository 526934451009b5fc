"""The 2019 victim loads the published Places365 checkpoint layout, and refuses bad files."""

from __future__ import annotations

import pytest
import torch
from camo_engine.io import jpeg
from camo_engine.victims import load_victim
from camo_engine.victims.checkpoint import CheckpointError
from camo_engine.victims.places365 import places365_architecture, places365_categories


@pytest.fixture(scope="module")
def published_layout(tmp_path_factory) -> tuple[torch.nn.Module, object]:
    """A checkpoint laid out like resnet50_places365.pth.tar: {'state_dict': {'module.*': ...}}."""
    torch.manual_seed(0)
    model = places365_architecture().eval()
    path = tmp_path_factory.mktemp("ckpt") / "resnet50_places365.pth.tar"
    state = {"module." + k: v for k, v in model.state_dict().items()}
    torch.save({"epoch": 90, "arch": "resnet50", "state_dict": state, "best_prec1": 54.7}, path)
    return model, path


def test_categories_ship_with_the_package():
    cats = places365_categories()
    assert len(cats) == 365
    assert cats[0] == "airfield" and cats[-1] == "zen_garden"
    assert len(set(cats)) == 365


def test_loads_published_layout(published_layout, photos):
    model, path = published_layout
    victim = load_victim("resnet50-places365", weights=path)
    x = jpeg.to_float(photos["coffee"])
    with torch.no_grad():
        expected = model(victim.preprocess(x)[None])
        got = victim(x[None])
    assert got.shape == (1, 365)
    assert torch.allclose(got, expected, atol=1e-5)
    assert victim.describe(got)[0] in places365_categories()


def test_needs_weights():
    with pytest.raises(ValueError, match="--weights"):
        load_victim("resnet50-places365")


def test_corrupt_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.pth.tar"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pth.tar: not a readable torch checkpoint"):
        load_victim("resnet50-places365", weights=bad)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pth: the file is empty"):
        load_victim("resnet50-places365", weights=empty)
    with pytest.raises(CheckpointError, match="no such file"):
        load_victim("resnet50-places365", weights=tmp_path / "missing.pth")


def test_wrong_architecture_is_a_clear_error(tmp_path):
    from torchvision.models import resnet18

    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": resnet18(num_classes=365).state_dict()}, path)
    with pytest.raises(CheckpointError, match="resnet18.pth: not a ResNet checkpoint: .*wrong shape"):
        load_victim("resnet50-places365", weights=path)
