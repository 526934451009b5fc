"""The reference backend: torch autograd on the victim module itself."""

from __future__ import annotations

import contextlib
from typing import Literal

import torch
from torch import Tensor

from ..victims.base import Victim
from .base import Step
from .convolutions import CONVOLUTION_LOCK

Precision = Literal["fp32", "bf16"]


class TorchBackend:
    """Autograd through ``victim.network``.

    ``precision="bf16"`` runs the network under CPU autocast; the loss is always taken in fp32.
    It pays only on CPUs with native bf16 (avx512_bf16 or AMX): on AVX2-only CPUs oneDNN
    converts to fp32 and it is slower than fp32 (benchmarks/NOTES.md).  Verdicts stay honest because the final verdict is always a
    separate fp32 forward on the JPEG-re-encoded image.
    """

    name = "torch"

    def __init__(
        self, victim: Victim, precision: Precision = "fp32", channels_last: bool = False
    ) -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        self.victim = victim
        self.precision = precision
        self.channels_last = channels_last
        if channels_last:
            victim.to(memory_format=torch.channels_last)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _layout(self, batch: Tensor) -> Tensor:
        if self.channels_last and batch.ndim == 4:
            return batch.contiguous(memory_format=torch.channels_last)
        return batch

    def outputs(self, batch: Tensor) -> Tensor:
        # The lock: never while another thread has oneDNN off (convolutions.native_convolutions).
        with torch.inference_mode(), CONVOLUTION_LOCK:
            return self.victim.network(self._layout(batch)).float()

    def step(self, batch: Tensor, targets: Tensor) -> Step:
        batch = self._layout(batch.detach()).requires_grad_(True)
        with torch.enable_grad(), CONVOLUTION_LOCK:
            with self._autocast():
                outputs = self.victim.network(batch)
            outputs = outputs.float()
            loss = self.victim.loss(outputs, targets)
            (grad,) = torch.autograd.grad(loss.sum(), batch)
        return Step(outputs.detach(), loss.detach(), grad)
