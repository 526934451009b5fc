"""Export once, reuse after: a cache of exported victim directories keyed by what they bake in.

The key covers the victim's name and objective (its loss is part of the gradient graph), its
weights, the export options and the tool versions, so a changed input never reuses a stale
export.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..victims.base import Victim
from .manifest import MANIFEST, Manifest, ManifestError, tool_versions, victim_fields


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "camo-engine" / "onnx"


def victim_key(victim: Victim, options: dict[str, Any]) -> str:
    """A short digest of everything an export of ``victim`` depends on."""
    digest = hashlib.sha256()
    description = {
        "victim": victim_fields(victim),
        "source": getattr(victim, "source_sha256", None),
        "options": options,
        "versions": tool_versions(),
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
