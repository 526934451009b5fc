"""``manifest.json``: what an exported victim directory holds and how to feed its graphs.

The graphs take a batch in *victim input space* (NCHW float32, already resized and normalised);
``input.from_rgb`` says how to get there from an RGB photo in [0, 1].
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from ..victims.base import Victim
from ..victims.objectives import Classifier, QualityRegressor

FORMAT = "camo-engine-onnx/1"
MANIFEST = "manifest.json"

# How each built-in victim maps an RGB [0, 1] photo to its input: ``(resize(x) - mean) / std``.
_CROP = "central square of 0.875 x the short side, antialiased bilinear resize to 224x224"
PREPROCESSING: dict[str, dict[str, Any]] = {
    "efficientnet-lite0": {
        "resize": _CROP,
        "mean": [127 / 255] * 3,
        "std": [128 / 255] * 3,
        "formula": "(x * 255 - 127) / 128",
    },
    "resnet50-places365": {
        "resize": _CROP,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "formula": "(x - mean) / std",
    },
    "brisque": {
        "resize": "antialiased bilinear resize to 384x512 (landscape, square) or 512x384 (portrait)",
        "gray": [0.2125, 0.7154, 0.0721],
        "mean": [0.0],
        "std": [1.0],
        "formula": "one grey channel: 0.2125 R + 0.7154 G + 0.0721 B",
    },
}


class ManifestError(ValueError):
    """A manifest that is missing, malformed, or does not match its files."""


@dataclass(frozen=True)
class GraphPair:
    """The forward and gradient graphs for one input geometry."""

    height: int
    width: int
    forward: str
    gradient: str
    check: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    victim: dict[str, Any]
    input: dict[str, Any]
    graphs: list[GraphPair]
    opset: int
    ir_version: int
    batch_dynamic: bool
    versions: dict[str, str]
    sha256: dict[str, str]
    format: str = FORMAT

    def pair(self, height: int, width: int) -> GraphPair:
        """The graphs for an input of this size; a clear error if none was exported."""
        for pair in self.graphs:
            if (pair.height, pair.width) == (height, width):
                return pair
        sizes = ", ".join(f"{p.height}x{p.width}" for p in self.graphs)
        raise ManifestError(f"no graphs exported for input size {height}x{width} (have: {sizes})")

    def write(self, directory: Path) -> Path:
        path = directory / MANIFEST
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, path: Path, verify: bool = True) -> Manifest:
        """Read ``path`` (a manifest file or its directory), checking the file hashes."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST
        if not path.is_file():
            raise ManifestError(f"{path}: no such manifest")
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ManifestError(f"{path}: format {data.get('format')!r}, expected {FORMAT!r}")
        data["graphs"] = [GraphPair(**g) for g in data["graphs"]]
        manifest = cls(**data)
        if verify:
            for name, digest in manifest.sha256.items():
                if sha256(path.parent / name) != digest:
                    raise ManifestError(f"{path.parent / name}: hash does not match {path.name}")
        return manifest


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tool_versions() -> dict[str, str]:
    return {name: version(name) for name in ("camo-engine", "torch", "onnx", "onnxscript", "onnxruntime")}


def victim_fields(victim: Victim) -> dict[str, Any]:
    """Name, kind and objective of a victim: enough to rebuild its loss and verdict."""
    fields: dict[str, Any] = {"name": victim.name, "kind": victim.kind}
    if isinstance(victim, QualityRegressor):
        fields |= {"threshold": victim.threshold, "target": victim.target, "higher_is_worse": victim.higher_is_worse}
    elif isinstance(victim, Classifier):
        fields |= {
            "top_k": victim.top_k,
            "target_class": victim.target_class,
            "confidence": victim.confidence,
            "categories": victim.categories,
        }
    return fields


def input_fields(victim: Victim, channels: int) -> dict[str, Any]:
    """Layout, value range and preprocessing of the graphs' ``images`` input."""
    spec = getattr(victim, "preprocessing", None) or PREPROCESSING.get(victim.name)
    fields: dict[str, Any] = {"name": "images", "layout": "NCHW", "dtype": "float32", "channels": channels}
    if spec is None:
        return fields | {"from_rgb": "not described for this victim"}
    low = [(0 - m) / s for m, s in zip(spec["mean"], spec["std"])]
    high = [(1 - m) / s for m, s in zip(spec["mean"], spec["std"])]
    return fields | {"value_range": [min(low), max(high)], "per_channel_range": [low, high], "from_rgb": spec}
