"""Gradient backends behind one interface (see :mod:`.base`)."""

from __future__ import annotations

from ..victims.base import Victim
from .base import GradientBackend, Step
from .torch_backend import TorchBackend

BACKENDS = ("torch",)


def make_backend(name: str, victim: Victim, **options: object) -> GradientBackend:
    """Build the backend ``name`` for ``victim``."""
    if name == "torch":
        return TorchBackend(victim, **options)
    raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "GradientBackend", "Step", "TorchBackend", "make_backend"]
