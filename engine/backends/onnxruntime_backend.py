"""The ONNX Runtime backend: runs a victim's exported forward and gradient graphs.

Inputs and outputs are bound with IO binding straight onto torch CPU memory: ORT reads the
batch where torch left it and writes outputs, loss and gradient into tensors the caller gets
back, so nothing is copied between the two runtimes.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor

from ..victims.base import Victim
from .base import Step

CPU = "CPUExecutionProvider"
OptimizationLevel = Literal["disable", "basic", "extended", "all"]
_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


class ProviderError(RuntimeError):
    """A requested execution provider is not in this onnxruntime build, or did not start."""


def select_providers(requested: list[str], fallback: bool = False) -> list[str]:
    """The providers to open sessions with, in priority order, always ending with CPU.

    An unavailable provider is an error naming what is available, or with ``fallback`` a
    warning, and that provider is dropped.
    """
    available = ort.get_available_providers()
    missing = [p for p in requested if p not in available]
    if missing and not fallback:
        raise ProviderError(
            f"execution provider(s) {', '.join(missing)} not available in this onnxruntime "
            f"build; available: {', '.join(available)} (pass fallback=True to run on CPU)"
        )
    if missing:
        warnings.warn(
            f"execution provider(s) {', '.join(missing)} not available; falling back to "
            f"{', '.join(p for p in requested if p in available) or CPU}",
            RuntimeWarning,
            stacklevel=3,
        )
    chosen = [p for p in requested if p in available]
    return chosen if CPU in chosen else [*chosen, CPU]


def check_session_providers(session: ort.InferenceSession, requested: list[str], fallback: bool, file: str) -> None:
    """Apply :func:`select_providers`' rule to what ``session`` really runs on.

    A provider can be in the build and still fail to start (no GPU, a missing CUDA or TensorRT
    library): onnxruntime then falls back to the CPU and only logs it.  Here that is an error
    naming the provider and ``file``, or with ``fallback`` a warning.
    """
    active = session.get_providers()
    idle = [p for p in requested if p not in active]
    if not idle:
        return
    message = f"{file}: execution provider(s) {', '.join(idle)} did not start; the session runs on {', '.join(active)}"
    if not fallback:
        raise ProviderError(message + " (pass fallback=True to run on CPU)")
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def session_options(
    intra_op_threads: int = 0,
    inter_op_threads: int = 0,
    optimization: OptimizationLevel = "all",
    spinning: bool = True,
) -> ort.SessionOptions:
    """Thread counts (0: onnxruntime's default), graph optimisation level, and whether idle
    worker threads spin (fastest on a free CPU, very slow on an oversubscribed one)."""
    if optimization not in _LEVELS:
        raise ValueError(f"optimization must be one of {', '.join(_LEVELS)}, got {optimization!r}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.graph_optimization_level = _LEVELS[optimization]
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def _bind(binding: ort.IOBinding, name: str, tensor: Tensor, output: bool = False) -> None:
    """Bind a contiguous float32 CPU tensor's memory as an input or output."""
    if tensor.dtype != torch.float32 or tensor.device.type != "cpu" or not tensor.is_contiguous():
        raise ValueError(f"{name}: IO binding needs a contiguous float32 CPU tensor")
    bind = binding.bind_output if output else binding.bind_input
    bind(name, "cpu", 0, np.float32, list(tensor.shape), tensor.data_ptr())


class OnnxRuntimeBackend:
    """``outputs``/``step`` from an exported directory (see ``camo_engine.export``).

    Sessions are opened lazily, one forward and one gradient session per input geometry.
    """

    name = "onnxruntime"

    def __init__(
        self,
        directory: Path | str,
        providers: list[str] | None = None,
        fallback: bool = False,
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
        optimization: OptimizationLevel = "all",
        spinning: bool = True,
    ) -> None:
        from ..export.manifest import Manifest

        self.directory = Path(directory)
        self.manifest = Manifest.read(self.directory)
        self.providers = select_providers(providers or [CPU], fallback)
        self.fallback = fallback
        self.options = session_options(intra_op_threads, inter_op_threads, optimization, spinning)
        self._sessions: dict[str, ort.InferenceSession] = {}

    @classmethod
    def from_victim(
        cls, victim: Victim, cache_dir: Path | str | None = None, export_options: dict[str, Any] | None = None, **options: Any
    ) -> OnnxRuntimeBackend:
        """Export ``victim`` once (cached by what the graphs bake in) and load it."""
        from ..export import exported

        return cls(exported(victim, cache_dir, **dict(export_options or {})), **options)

    def _session(self, file: str) -> ort.InferenceSession:
        if file not in self._sessions:
            session = ort.InferenceSession(str(self.directory / file), sess_options=self.options, providers=self.providers)
            check_session_providers(session, self.providers, self.fallback, str(self.directory / file))
            self._sessions[file] = session
        return self._sessions[file]

    def _run(self, file: str, inputs: dict[str, Tensor], outputs: dict[str, Tensor]) -> None:
        session = self._session(file)
        binding = session.io_binding()
        for name, tensor in inputs.items():
            _bind(binding, name, tensor)
        for name, tensor in outputs.items():
            _bind(binding, name, tensor, output=True)
        session.run_with_iobinding(binding)

    def _output_shape(self, batch: Tensor) -> tuple[int, ...]:
        victim = self.manifest.victim
        if victim["kind"] == "classifier":
            return (batch.shape[0], len(victim["categories"]))
        return (batch.shape[0],)

    @staticmethod
    def _input(batch: Tensor) -> Tensor:
        return batch.detach().to(torch.float32).contiguous()

    def outputs(self, batch: Tensor) -> Tensor:
        batch = self._input(batch)
        pair = self.manifest.pair(*batch.shape[-2:])
        out = torch.empty(self._output_shape(batch))
        self._run(pair.forward, {"images": batch}, {"outputs": out})
        return out

    def step(self, batch: Tensor, targets: Tensor, out: Step | None = None) -> Step:
        """Outputs, loss and gradient; ``out`` are preallocated tensors to write them into."""
        batch = self._input(batch)
        pair = self.manifest.pair(*batch.shape[-2:])
        if out is None:
            out = Step(torch.empty(self._output_shape(batch)), torch.empty(batch.shape[0]), torch.empty_like(batch))
        self._run(
            pair.gradient,
            {"images": batch, "targets": self._input(targets)},
            {"outputs": out.outputs, "loss": out.loss, "grad": out.grad},
        )
        return out
