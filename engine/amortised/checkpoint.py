"""The amortised net's checkpoints: save, load with a clear error, check against the victim
and eps it is used with, and export to ONNX."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..victims.checkpoint import CheckpointError, read_state_dict
from .net import AmortisedNet

FORMAT = "camo-engine-protector"
FORMAT_VERSION = 1
ONNX_TOLERANCE = 1e-4


def versions() -> dict[str, str]:
    """Package versions worth recording next to trained weights."""
    out = {}
    for name in ("camo-engine", "torch"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def save_amortised(model: AmortisedNet, path: Path | str, meta: dict[str, Any]) -> Path:
    """Write the weights, the architecture and ``meta`` (victim, training config, ...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "config": model.config,
            "meta": {**meta, "versions": versions()},
            "state_dict": model.state_dict(),
        },
        path,
    )
    return path


def load_amortised(path: Path | str) -> tuple[AmortisedNet, dict[str, Any]]:
    """The net (eval mode) and its meta dict; :class:`CheckpointError` names what is wrong."""
    path = Path(path)
    # read_state_dict checks the file and loads it safely (weights only); the header is read
    # again for the architecture and meta, which it drops.  The file is a few hundred kB.
    state = read_state_dict(path, prefix="")
    header = torch.load(path, map_location="cpu", weights_only=True)
    if header.get("format") != FORMAT:
        raise CheckpointError(path, f"not a camo-engine protector checkpoint (no {FORMAT!r} format tag)")
    if header.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            path, f"protector format version {header.get('version')}, this build reads {FORMAT_VERSION}"
        )
    try:
        model = AmortisedNet(**header["config"])
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(path, f"weights do not fit the stored architecture ({exc})") from exc
    return model.eval(), dict(header.get("meta", {}))


def amortised_for(source: AmortisedNet | Path | str, victim: str, eps: float) -> AmortisedNet:
    """The protector to run against ``victim`` at ``eps`` (eval mode), checked for both.

    A checkpoint must have been trained against ``victim``: its meta records the victim it was
    trained against.  A net passed in directly is taken at the caller's word for the victim.
    Either way its eps must be the attack's: a pattern learned for another ball would be
    clipped to this one (or leave part of it unused).
    """
    if isinstance(source, AmortisedNet):
        net = source
    else:
        path = Path(source)
        if path.suffix.lower() == ".onnx":
            raise CheckpointError(path, "an ONNX export records no victim: give the .pt checkpoint")
        net, meta = load_amortised(path)
        trained = str(meta.get("victim"))
        # A user ONNX victim is named by its file; the meta may hold the path given in training.
        if trained.startswith("onnx:"):
            trained = f"onnx:{Path(trained.removeprefix('onnx:')).name}"
        if trained != victim:
            raise CheckpointError(
                path,
                f"this protector was trained against {meta.get('victim')!r}, not {victim!r}; "
                f"train one with `camo-engine train-protector --victim {victim}`",
            )
    if abs(net.eps - eps) > 1e-9:
        raise ValueError(
            f"the protector was trained for eps {net.eps * 255:.4g}/255 but the attack's eps is "
            f"{eps * 255:.4g}/255: use the same eps"
        )
    return net.eval()


# -- ONNX ---------------------------------------------------------------------------------------
def export_amortised_onnx(
    model: AmortisedNet, path: Path | str, check_size: tuple[int, int] = (37, 53)
) -> float:
    """Export ``forward`` (full resolution) with dynamic batch, height and width.

    Returns onnxruntime's max deviation from torch on a batch of 2 at ``check_size``, a size
    other than the traced one; beyond 1e-4 the export raises.  The working-resolution resize of
    :func:`amortised_starts` is not in the graph: callers downscale large photos themselves.
    """
    import onnxruntime as ort  # only exporting pays for the import

    path = Path(path)
    model = model.eval()
    gen = torch.Generator().manual_seed(0)
    example = torch.rand(1, 3, 64, 96, generator=gen)
    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        dynamic_shapes=(dims,),
        input_names=["rgb"],
        output_names=["protected"],
        verbose=False,
    )
    program.save(str(path))
    probe = torch.rand(2, 3, *check_size, generator=gen)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"rgb": probe.numpy()})[0]
    with torch.no_grad():
        deviation = float(np.abs(got - model(probe).numpy()).max())
    if not deviation <= ONNX_TOLERANCE:
        raise RuntimeError(f"{path}: onnxruntime deviates from torch by {deviation:.2e}")
    return deviation
