"""Attack levers side by side: success after JPEG 90, JPEG-alone share, steps and images/s.

    python benchmarks/bench_levers.py [--victim efficientnet-lite0] [--images 32] [--runs 1]

Every variant is an ``AttackConfig`` at the same eps (8/255) and budget (40 steps), run in one
process on the same photos: the bench's default workload fitted to the victim's input size,
exactly what ``camo-engine bench --compare`` gives every tool.  Runs are round-robin (each
variant once, then the next run) so the shared CPU's drifting load hits them alike; images/s is
the median over runs.  Success is the engine's own verdict after real JPEG re-encoding.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace

import torch
from camo_engine.attack import IFGSM, AttackConfig, AttackResult
from camo_engine.backends import TorchBackend
from camo_engine.benchmarks.harness import CountingBackend, bench_images, fit
from camo_engine.io import jpeg
from camo_engine.measure.fidelity import psnr
from camo_engine.victims import load_victim

# Plain I-FGSM (the first default) and each lever on top of it, at the same eps and budget.
PLAIN = AttackConfig(momentum=0.0, blur_sigma=0.0)
VARIANTS = {
    "I-FGSM (no momentum)": PLAIN,
    "random start": replace(PLAIN, random_start=True),
    "schedule 2/255 -> 1/255": replace(PLAIN, alpha_start=2 / 255),
    "schedule 4/255 -> 1/255": replace(PLAIN, alpha_start=4 / 255),
    "momentum 1.0": replace(PLAIN, momentum=1.0),
    "momentum 0.5": replace(PLAIN, momentum=0.5),
    "momentum 0.25": replace(PLAIN, momentum=0.25),
    "momentum 1.0 + schedule 2/255": replace(PLAIN, momentum=1.0, alpha_start=2 / 255),
    "alpha 2/255 constant": replace(PLAIN, alpha=2 / 255),
    "blur 1": replace(PLAIN, blur_sigma=1.0),
    "momentum 0.5 + blur 1 (default)": AttackConfig(),
    "momentum 0.5 + blur 2": replace(PLAIN, momentum=0.5, blur_sigma=2.0),
    "momentum 0.5 + blur 0.5": replace(PLAIN, momentum=0.5, blur_sigma=0.5),
    "default + first step 4/255": AttackConfig(alpha_start=4 / 255),
    "default + first step 6/255": AttackConfig(alpha_start=6 / 255),
    "default + first step 8/255": AttackConfig(alpha_start=8 / 255),
}


def run(attack: IFGSM, images: list[torch.Tensor]) -> list[AttackResult]:
    return sorted(attack.run(images), key=lambda r: r.index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", default="efficientnet-lite0")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--top-k", type=int, default=None, help="classifiers: a harder objective")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="1: see benchmarks/NOTES.md")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    victim = load_victim(args.victim, top_k=args.top_k)
    named = bench_images(args.images)
    names = [name for name, _ in named]
    fitted = [fit(rgb, victim.geometry(*rgb.shape[:2])) for _, rgb in named]
    images = [jpeg.to_float(rgb) for rgb in fitted]
    backend = CountingBackend(TorchBackend(victim))
    run(IFGSM(victim, backend, AttackConfig(steps=2)), images[:4])  # warm-up
    print(f"load average at start: {os.getloadavg()}", flush=True)
    walls: dict[str, list[float]] = {v: [] for v in args.variants}
    results: dict[str, list[AttackResult]] = {}
    rows: dict[str, int] = {}
    for _ in range(args.runs):
        for label in args.variants:
            backend.reset()
            start = time.perf_counter()
            results[label] = run(IFGSM(victim, backend, VARIANTS[label]), images)
            walls[label].append(time.perf_counter() - start)
            rows[label] = backend.rows
            print(f"{label}: {walls[label][-1]:.1f} s", flush=True)
    print(f"load average at end: {os.getloadavg()}")
    n = len(images)
    print(f"{'variant':<32} {'success':>8} {'alone':>6} {'mean steps':>10} {'rows':>5} {'images/s':>9} {'PSNR':>6}  failed")
    for label in args.variants:
        res = results[label]
        wall = statistics.median(walls[label])
        failed = [names[r.index] for r in res if not r.protected]
        print(
            f"{label:<32} {sum(r.protected for r in res) / n:>8.1%} {sum(r.states['alone'] for r in res) / n:>6.1%} "
            f"{statistics.fmean(r.steps for r in res):>10.2f} {rows[label]:>5} {n / wall:>9.2f} "
            f"{statistics.median(psnr(fitted[r.index], r.rgb) for r in res):>6.1f}  {' '.join(failed)}"
        )


if __name__ == "__main__":
    main()
