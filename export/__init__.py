"""Victims to ONNX: a forward graph, an input-gradient graph and a manifest per victim.

The engine reaches this layer through the two functions here; everything else is internal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..victims.base import Victim


def export_victim(victim: Victim, outdir: Path | str, **options: Any) -> Path:
    """Export ``victim`` into ``outdir`` and return the manifest path: a torch victim by tracing
    its autograd graph, an ONNX-file victim by building the gradient graph from its file."""
    from ..victims.onnx_victim import OnnxModel

    if isinstance(victim, OnnxModel):
        from .from_onnx import export_onnx_victim

        return export_onnx_victim(victim, Path(outdir), **options)
    from .from_torch import export_victim as export_torch_victim

    return export_torch_victim(victim, Path(outdir), **options)


def exported(victim: Victim, cache_dir: Path | str | None = None, **options: Any) -> Path:
    """The folder of ``victim``'s export, from the cache (exported once on a miss)."""
    from .cache import cached_export, default_cache_dir

    def export(outdir: Path) -> Path:
        return export_victim(victim, outdir, **options)

    return cached_export(victim, Path(cache_dir or default_cache_dir()), export, options)


__all__ = ["export_victim", "exported"]
