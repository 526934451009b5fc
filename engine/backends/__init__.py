"""Gradient backends behind one interface (see :mod:`.base`)."""

from __future__ import annotations

from ..victims.base import Victim
from ..victims.ensemble import QualityEnsemble
from .base import GradientBackend, Step
from .torch_backend import TorchBackend

BACKENDS = ("torch", "onnxruntime")


def make_backend(name: str, victim: Victim, **options: object) -> GradientBackend:
    """Build the backend ``name`` for ``victim``.

    ``onnxruntime`` options: ``cache_dir``, ``export_options``, ``providers``, ``fallback``,
    ``intra_op_threads``, ``inter_op_threads``, ``optimization``.
    """
    if isinstance(victim, QualityEnsemble):
        from .ensemble_backend import EnsembleBackend

        # An ONNX-file member runs on onnxruntime whatever is asked; the options are the asked
        # backend's, so that member gets onnxruntime's defaults.
        return EnsembleBackend(
            victim,
            [
                make_backend(name, m, **options) if m.exportable else make_backend("onnxruntime", m)
                for m in victim.members
            ],
        )
    if name == "torch":
        if not victim.exportable:
            raise ValueError(
                f"victim {victim.name!r} is an ONNX file: torch autograd cannot run it; "
                "use --backend onnxruntime"
            )
        return TorchBackend(victim, **options)
    if name == "onnxruntime":
        # Imported here so that the torch backend never needs onnxruntime installed.
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend.from_victim(victim, **options)
    raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "GradientBackend", "Step", "TorchBackend", "make_backend"]
