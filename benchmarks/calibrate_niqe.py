"""NIQE of the bundled photos as they are, re-encoded and degraded: where the NIQE victim's
threshold and target come from (``camo_engine.victims.niqe.Niqe``).

    python benchmarks/calibrate_niqe.py [--limit N]

Scores are the numpy reference (``camo_engine.measure.appeal.niqe``, scikit-video's maths) on
each photo at its own resolution: clean; JPEG at 90, 30 and 10 (Pillow); a Gaussian blur of
2 px, alone and then JPEG 90.  A threshold belongs above every clean and JPEG-90 score and among
the blurred ones, as BRISQUE's 50 is (benchmarks/NOTES.md, "BRISQUE calibration").
"""

from __future__ import annotations

import argparse
import io

import numpy as np
from PIL import Image, ImageFilter

from camo_engine.measure.appeal import luminance, niqe
from camo_engine.samples import sample_paths


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def variants(image: Image.Image) -> dict[str, Image.Image]:
    blurred = image.filter(ImageFilter.GaussianBlur(2))
    return {
        "clean": image,
        "jpeg 90": jpeg(image, 90),
        "jpeg 30": jpeg(image, 30),
        "jpeg 10": jpeg(image, 10),
        "blur 2": blurred,
        "blur 2 + jpeg 90": jpeg(blurred, 90),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N bundled photos")
    args = parser.parse_args()
    rows = []
    for path in sample_paths()[: args.limit]:
        scores = {k: niqe(luminance(np.asarray(v))) for k, v in variants(Image.open(path).convert("RGB")).items()}
        rows.append(scores)
        if len(rows) == 1:
            print("| photo | " + " | ".join(scores) + " |")
            print("|---" * (len(scores) + 1) + "|")
        print(f"| {path.stem} | " + " | ".join(f"{v:.2f}" for v in scores.values()) + " |", flush=True)
    for name in rows[0]:
        values = [r[name] for r in rows]
        print(f"{name}: {min(values):.2f} to {max(values):.2f}")


if __name__ == "__main__":
    main()
