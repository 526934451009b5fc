"""The amortised protector: a small U-Net that protects a photo in one forward pass (the net),
its checkpoints and ONNX export, and its training (:mod:`.train`)."""

from .checkpoint import (
    amortised_for,
    export_amortised_onnx,
    load_amortised,
    save_amortised,
)
from .net import AmortisedNet, amortised_inits, amortised_starts

__all__ = [
    "AmortisedNet",
    "amortised_for",
    "amortised_inits",
    "amortised_starts",
    "export_amortised_onnx",
    "load_amortised",
    "save_amortised",
]
