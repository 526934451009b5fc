"""Contact sheets: one row per photo, one panel per stage, written as a PNG with matplotlib."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

Tile = tuple[str, np.ndarray]  # (title, (H, W, 3) uint8)


def amplified_difference(reference: np.ndarray, changed: np.ndarray) -> tuple[np.ndarray, float]:
    """The difference around mid-grey, stretched so its 99th percentile fills the range.

    The largest differences are a few JPEG outliers at colour edges; stretching the maximum
    would hide the rest.  Returns the image and the gain used.
    """
    diff = changed.astype(np.int16) - reference.astype(np.int16)
    gain = 127 / max(1.0, float(np.percentile(np.abs(diff), 99)))
    return np.clip(128 + diff * gain, 0, 255).astype(np.uint8), gain


def thumbnail(rgb: np.ndarray, size: int = 384) -> np.ndarray:
    """A copy at most ``size`` px on its long side (sheets of 12-MP photos stay small)."""
    im = Image.fromarray(rgb)
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    return np.asarray(im)


def figure(width: float, height: float) -> Any:
    """A matplotlib Figure (inches) that renders with Agg, leaving pyplot's global backend alone."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def write_contact_sheet(rows: Sequence[Sequence[Tile]], path: Path, title: str = "") -> Path:
    """Draw ``rows`` of titled panels into ``path`` (PNG)."""
    n_rows = max(1, len(rows))
    n_cols = max((len(r) for r in rows), default=1)
    fig = figure(3.2 * n_cols, 3.0 * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for ax_row, row in zip(axes, rows):
        for ax, (name, image) in zip(ax_row, row):
            ax.imshow(image)
            ax.set_title(name, fontsize="small")
    for ax in axes.flat:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
