"""Does the torch BRISQUE at native resolution agree with the float64 reference
(tests/brisque_reference.py), on clean study images and on protected PNGs written by run.py?

    .venv/bin/python -m benchmarks.robust_lab.check_brisque [DIR_OF_PNGS]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tests.brisque_reference import score

from .run import study_set
from .views import PANEL_CHANNELS, BrisqueReadings


def main() -> None:
    torch.set_num_threads(1)
    readings = BrisqueReadings()
    images = [(n, r) for n, r in study_set()[::6]]
    if len(sys.argv) > 1:
        images += [(p.name, np.asarray(Image.open(p).convert("RGB"))) for p in sorted(Path(sys.argv[1]).glob("*.png"))]
    diffs = []
    half = PANEL_CHANNELS["medium"][4]
    for name, rgb in images:
        for view, im in (("as_written", rgb), ("half_jpeg85", half(rgb))):
            ours = readings.read(im)["native"]
            ref = score(im / 255.0)
            diffs.append(abs(ours - ref))
            print(f"{name:32s} {view:12s} torch {ours:8.3f} float64 {ref:8.3f} diff {ours - ref:+.4f}")
    print(f"max |diff| {max(diffs):.4f} over {len(diffs)} readings; median {float(np.median(diffs)):.4f}")


if __name__ == "__main__":
    main()
