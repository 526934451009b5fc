"""Strength presets measured: robustness per view, PSNR and speed on the bundled photos and crops.

    python benchmarks/bench_strength.py [--victims brisque,efficientnet-lite0]
        [--strengths low,medium,high] [--eps 8,12] [--steps 60] [--check-every 1] [--images 36]
        [--size 320] [--out benchmarks/results]

For each victim and strength, `Protector(victim, strength=...)` protects the workload (the
bundled sample photos, then crops of them, short side ``--size``) as `protect` does, and every
photo is judged under every view of the strength's panel (its own verdict: the written JPEG,
then each channel with Pillow, then each deployment reading).  Reported per view: the
protected share and the share the view changes alone; overall: protected under every view,
median PSNR, median steps, images/s.  A contact sheet per victim and strength goes to the
output folder, so the perturbation can be looked at.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from camo_engine import Protector
from camo_engine.attack import strength_config
from camo_engine.benchmarks.harness import bench_images, environment
from camo_engine.io import strict_json
from camo_engine.measure.contact_sheet import (
    amplified_difference,
    thumbnail,
    write_contact_sheet,
)

SHEET_ROWS = 6


def run(victim: str, strength: str, workload: list, out: Path, eps_255: float | None = None,
        steps: int | None = None, check_every: int | None = None) -> dict:
    """Protect ``workload`` at ``strength`` (its eps, step budget and verdict cadence, or
    ``eps_255``/255, ``steps`` and ``check_every``) and judge every view."""
    config = strength_config(
        strength, eps=None if eps_255 is None else eps_255 / 255, steps=steps, check_every=check_every
    )
    protector = Protector(victim, strength=strength, config=config)
    start = time.perf_counter()
    results = protector.protect([rgb for _, rgb in workload])
    seconds = time.perf_counter() - start
    n = len(results)
    views = {}
    for r in results:
        for v in r.views:
            counts = views.setdefault(v["view"], [0, 0])
            counts[0] += v["protected"]
            counts[1] += v["alone"] or v["already"]
    sheet = []
    for (name, rgb), r in list(zip(workload, results))[:SHEET_ROWS]:
        amplified, gain = amplified_difference(r.unattacked, r.rgb)
        sheet.append([(name, thumbnail(rgb)), (f"{strength}: {r.fidelity['psnr']:.1f} dB", thumbnail(r.rgb)), (f"difference x{gain:.0f}", thumbnail(amplified))])
    label = strength if eps_255 is None else f"{strength}_eps{eps_255:g}"
    write_contact_sheet(sheet, out / f"strength_{victim}_{label}.png", f"{victim}, strength {label}: original | protected | amplified difference")
    return {
        "victim": victim,
        "strength": strength,
        "panel": protector.panel.name,
        "views": len(protector.panel.views),
        "eps_255": round(protector.config.eps * 255, 3),
        "step_budget": protector.config.steps,
        "check_every": protector.config.check_every,
        "images": n,
        "protected_every_view": sum(r.protected for r in results) / n,
        "alone_every_view": sum(r.alone or r.already for r in results) / n,
        "worst_view_protected": min(c[0] for c in views.values()) / n,
        "median_psnr": statistics.median(r.fidelity["psnr"] for r in results),
        "median_steps": statistics.median(r.steps for r in results),
        "images_per_s": n / seconds,
        "seconds": seconds,
        "per_view": {name: {"protected": c[0] / n, "alone": c[1] / n} for name, c in views.items()},
        # Which photos fell short, with their steps and the views they failed.
        "unprotected": [
            {"image": name, "steps": r.steps, "failed_views": [v["view"] for v in r.views if not v["protected"]]}
            for (name, _), r in zip(workload, results) if not r.protected
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victims", default="brisque,efficientnet-lite0")
    parser.add_argument("--strengths", default="low,medium,high")
    parser.add_argument("--eps", default="", help="eps values in /255, comma-separated (default: each preset's)")
    parser.add_argument("--steps", type=int, help="step budget (default: each preset's)")
    parser.add_argument("--check-every", type=int, help="panel verdict every N steps (default: each preset's)")
    parser.add_argument("--images", type=int, default=36)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="strength")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    # Read before the runs: the commit is that of the code the runs import, even if the tree
    # moves on while they take their minutes.
    started_in = environment()
    workload = bench_images(args.images, args.size)
    rows = []
    for victim in args.victims.split(","):
        for strength, eps in itertools.product(args.strengths.split(","), [float(e) for e in args.eps.split(",") if e] or [None]):
            row = run(victim, strength, workload, args.out, eps, args.steps, args.check_every)
            rows.append(row)
            print(
                f"{victim:>18} {strength:>6} eps {row['eps_255']:g}/255 ({row['views']:>2} views): every view {row['protected_every_view']:.0%} "
                f"(alone {row['alone_every_view']:.0%}), worst view {row['worst_view_protected']:.0%}, "
                f"PSNR {row['median_psnr']:.1f} dB, steps {row['median_steps']:g}, {row['images_per_s']:.3f} images/s",
                flush=True,
            )
            for view, share in row["per_view"].items():
                if share["protected"] < 1:
                    print(f"{'':>28} {view}: {share['protected']:.0%} (alone {share['alone']:.0%})", flush=True)
            for photo in row["unprotected"]:
                print(f"{'':>28} not protected: {photo['image']} after {photo['steps']} steps, "
                      f"{len(photo['failed_views'])} views failed", flush=True)
    result = {"command": " ".join(sys.argv), "environment": {**started_in, "load_average": os.getloadavg()}, "rows": rows}
    (args.out / f"{args.name}.json").write_text(strict_json.dumps(result, indent=2))
    with open(args.out / f"{args.name}.csv", "w", newline="") as fp:
        writer = csv.DictWriter(fp, fieldnames=[k for k in rows[0] if k not in ("per_view", "unprotected")], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out / (args.name + '.json')}")


if __name__ == "__main__":
    main()
