"""Export once, reuse after: a cache of exported victim directories keyed by what they bake in.

The key covers the victim's name and objective (its loss is part of the gradient graph), its
weights, the export options, the versions of the tools that trace and run the graphs, and the
source code that defines the graphs: the victim's own modules (and the camo-engine modules they
use), the module classes of its network, and the exporter.  camo-engine's version string is not
in it: it does not change when that code does, so a changed exporter, gradient rule or victim
never reuses a stale export.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from ..victims.base import Victim
from .manifest import MANIFEST, Manifest, ManifestError, tool_versions, victim_fields


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "camo-engine" / "onnx"


# Packages whose code is covered by their version in the key (tool_versions), or by Python's.
_VERSIONED = {"torch", "builtins", "abc", "typing", "collections", "functools", "enum"}
_EXPORTER = Path(__file__).parent


def _module_file(module: ModuleType | None) -> Path | None:
    try:
        name = inspect.getsourcefile(module) if module is not None else None
    except TypeError:  # a built-in or C-extension module: no source to hash
        return None
    return Path(name) if name else None


def graph_sources(victim: Victim) -> dict[str, Path]:
    """The source files that define ``victim``'s exported graphs, by module name.

    That is every module defining a class of the victim or of a module in its network (torch's
    own are covered by torch's version), every camo-engine module those modules use directly
    (objectives, geometry, checkpoint loading), and every module of the exporter.
    """
    modules = {
        cls.__module__
        for module in victim.modules()
        for cls in type(module).__mro__
        if cls.__module__.partition(".")[0] not in _VERSIONED
    }
    package = __name__.partition(".")[0]  # camo_engine
    for name in list(modules):
        for value in vars(sys.modules.get(name, ModuleType(name))).values():
            used = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
            if isinstance(used, str) and used.partition(".")[0] == package:
                modules.add(used)
    files = {name: _module_file(sys.modules.get(name)) for name in sorted(modules)}
    files |= {f"{__package__}.{path.stem}": path for path in sorted(_EXPORTER.glob("*.py"))}
    return {name: path for name, path in sorted(files.items()) if path is not None}


def sources_digest(victim: Victim) -> str:
    """sha256 over the module names and contents of :func:`graph_sources` (read each call, so
    an edit is seen without a restart)."""
    digest = hashlib.sha256()
    for name, path in graph_sources(victim).items():
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def victim_key(victim: Victim, options: dict[str, Any]) -> str:
    """A short digest of everything an export of ``victim`` depends on."""
    digest = hashlib.sha256()
    description = {
        "victim": victim_fields(victim),
        "source": getattr(victim, "source_sha256", None),  # an ONNX-file victim's file
        "code": sources_digest(victim),
        "options": options,
        "versions": {k: v for k, v in tool_versions().items() if k != "camo-engine"},
    }
    digest.update(json.dumps(description, sort_keys=True, default=str).encode())
    for name, tensor in sorted(victim.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:20]


def cached_export(
    victim: Victim, cache_dir: Path, export: Callable[[Path], Path], options: dict[str, Any]
) -> Path:
    """The cached export directory of ``victim``, running ``export(tmpdir)`` on a miss.

    The export is written to a temporary sibling and renamed into place, so a crash never
    leaves a half-written entry that a later run would trust.
    """
    cache_dir = Path(cache_dir)
    target = cache_dir / f"{victim.name}-{victim_key(victim, options)}"
    if (target / MANIFEST).is_file():
        try:
            Manifest.read(target)
            return target
        except ManifestError:
            shutil.rmtree(target)
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{victim.name}-", dir=cache_dir))
    try:
        export(staging)
        staging.rename(target)
    except OSError:
        if not (target / MANIFEST).is_file():
            raise
        # Another process exported the same key meanwhile: keep its copy.
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
