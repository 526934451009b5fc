"""Time the CPU implementations of the fused I-FGSM step side by side.

    python benchmarks/bench_kernels.py [--threads 2] [--sizes 0.25 12] [--rounds N]

Every round runs each variant once, in a fresh random order, so a busy machine slows them alike.
The table gives the wall-clock median and fastest round, the median CPU time of the process (all
threads: on a loaded machine it shows the work apart from the waiting), and the speed-up of each
wall-clock median over the torch reference's.  "out given" passes a preallocated output, as a loop
that updates in place would.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import time
from collections.abc import Callable

import torch
from camo_engine.kernels.ifgsm_step import available_implementations, reference, select
from torch import Tensor

ALPHA, EPS = 1 / 255, 8 / 255
GPU_ONLY = {"numba-cuda", "cuda-source"}


def photo_shape(megapixels: float) -> tuple[int, int, int]:
    """A 4:3 RGB photo of about ``megapixels``."""
    height = round(math.sqrt(megapixels * 1e6 * 3 / 4))
    return 3, height, round(height * 4 / 3)


def variants(x: Tensor, grad: Tensor, centre: Tensor) -> dict[str, Callable[[], Tensor]]:
    """The reference as IFGSM runs it, and each other CPU implementation with and without out."""
    out = torch.empty_like(x)
    runs: dict[str, Callable[[], Tensor]] = {
        "torch": lambda: reference(x, grad, centre, ALPHA, EPS)
    }
    for name in available_implementations():
        if name == "torch" or name in GPU_ONLY:
            continue
        step = select(name)
        runs[name] = lambda step=step: step(x, grad, centre, ALPHA, EPS)
        runs[f"{name}, out given"] = lambda step=step: step(x, grad, centre, ALPHA, EPS, out=out)
    return runs


def time_rounds(
    runs: dict[str, Callable[[], Tensor]], rounds: int
) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds per call for each variant, interleaved in a new order every round."""
    for run in runs.values():  # warm-up: numba compiles, pages and caches settle
        run()
        run()
    seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    order = list(runs)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            wall, cpu = time.perf_counter(), time.process_time()
            runs[name]()
            seconds[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return seconds


def bench(megapixels: float, rounds: int) -> list[str]:
    """Table rows for one photo size; checks every variant against the reference first."""
    gen = torch.Generator().manual_seed(0)
    shape = photo_shape(megapixels)
    centre = torch.rand(shape, generator=gen)
    x = (centre + (torch.rand(shape, generator=gen) * 2 - 1) * EPS).clamp(0, 1)
    grad = torch.randn(shape, generator=gen)
    runs = variants(x, grad, centre)
    expected = reference(x, grad, centre, ALPHA, EPS).view(torch.int32)
    for name, run in runs.items():
        if not torch.equal(run().view(torch.int32), expected):
            raise AssertionError(f"{name} differs from the reference")
    seconds = time_rounds(runs, rounds)
    base = statistics.median(wall for wall, _ in seconds["torch"])
    rows = []
    for name, times in seconds.items():
        walls, cpus = [wall for wall, _ in times], [cpu for _, cpu in times]
        median = statistics.median(walls)
        rows.append(
            f"{megapixels:>6g} MP  {name:<22}{median * 1e3:>11.2f}{min(walls) * 1e3:>12.2f}"
            f"{statistics.median(cpus) * 1e3:>10.2f}{base / median:>10.2f}x"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.25, 12.0], help="megapixels")
    parser.add_argument("--rounds", type=int, help="default: 50 / megapixels, at least 9")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()} (cpu-fused is one thread by design)")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(
        f"{'size':>9}  {'implementation':<22}{'median ms':>11}{'fastest ms':>12}{'CPU ms':>10}"
        f"{'speed-up':>11}"
    )
    for megapixels in args.sizes:
        rounds = args.rounds or max(9, round(50 / megapixels))
        for row in bench(megapixels, rounds):
            print(row, flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
