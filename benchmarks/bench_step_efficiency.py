"""Per-step efficiency: forward + input-gradient of ResNet50-Places365 against the matmul peak.

    python benchmarks/bench_step_efficiency.py [--batch 8] [--threads 2] [--repeats 5] [--compile]

The architecture is torchvision's ResNet50 with 365 classes and seeded random weights (the
published checkpoint cannot be downloaded here; the time does not depend on the weights).  Its
FLOPs per image come from ``FlopCounterMode`` (matmuls and convolutions; the victim's weights
need no gradient, so backward is the input gradient only).  The peak is the best of square
matmuls of a few sizes at the same precision and thread count.

Peaks and passes are timed round-robin, ``repeats`` times each, so the shared CPU's load hits
them alike; each figure is the best time (the least disturbed run), and the median is printed
beside it.  bf16 runs under CPU autocast; on a CPU without avx512_bf16/AMX (this one: AVX2
only) oneDNN emulates bf16 by converting to fp32, so expect it to be slower than fp32.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from camo_engine.backends import TorchBackend
from camo_engine.measure.flops import PRECISION_DTYPES, victim_work_per_row
from camo_engine.victims.places365 import (
    INPUT_SIZE,
    ResNet50Places365,
    places365_architecture,
)

MATMUL_SIZES = (1024, 2048, 3072)


def matmul_task(n: int, precision: str) -> tuple[Callable[[], object], float]:
    """A square matmul of side ``n`` and its GFLOP."""
    dtype = PRECISION_DTYPES[precision]
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    return (lambda: torch.matmul(a, b)), 2 * n**3 / 1e9


def step_task(victim: ResNet50Places365, batch: int, precision: str, channels_last: bool,
              compiled: bool) -> Callable[[], object]:
    """One forward + input-gradient pass of the engine's torch backend on a batch."""
    backend = TorchBackend(victim, precision=precision, channels_last=channels_last)
    if compiled:
        victim.model = torch.compile(victim.model)
    x = torch.rand(batch, 3, INPUT_SIZE, INPUT_SIZE)
    with torch.no_grad():
        targets = victim.reference(*(victim.network(x[:1]).expand(batch, -1),) * 2)
    return lambda: backend.step(x, targets)


def time_once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also torch.compile (fp32)")
    parser.add_argument("--quick", action="store_true", help="one matmul size, no channels-last, one warm-up")
    parser.add_argument("--precisions", default="fp32,bf16",
                        help="comma-separated; bf16 is ~57x slower than fp32 on a CPU without avx512_bf16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(365)

    def fresh() -> ResNet50Places365:
        return ResNet50Places365(places365_architecture()).eval()

    gflop = victim_work_per_row(fresh(), (INPUT_SIZE, INPUT_SIZE)).matmul_conv * args.batch
    tasks: dict[str, tuple[Callable[[], object], float, str]] = {}
    precisions = args.precisions.split(",")
    for precision in precisions:
        for n in MATMUL_SIZES[1:2] if args.quick else MATMUL_SIZES:
            fn, work = matmul_task(n, precision)
            tasks[f"matmul {n} {precision}"] = (fn, work, precision)
    variants = [("fp32", False, False), ("fp32", True, False), ("bf16", False, False), ("bf16", True, False)]
    variants = [v for v in variants if v[0] in precisions]
    if args.quick:
        variants = [v for v in variants if not v[1]]
    if args.compile:
        variants.append(("fp32", True, True))
    for precision, channels_last, compiled in variants:
        label = f"resnet50 fwd+grad b{args.batch} {precision}" + (" channels_last" if channels_last else "") + (
            " compiled" if compiled else "")
        tasks[label] = (step_task(fresh(), args.batch, precision, channels_last, compiled), gflop, precision)

    print(f"threads {args.threads}, load average at start {os.getloadavg()}", flush=True)
    for fn, _, _ in tasks.values():  # warm-up: kernel selection, oneDNN primitives, compile
        for _ in range(1 if args.quick else 2):
            fn()
    times: dict[str, list[float]] = {label: [] for label in tasks}
    for _ in range(args.repeats):
        for label, (fn, _, _) in tasks.items():
            times[label].append(time_once(fn))
    print(f"load average at end {os.getloadavg()}; GFLOP per pass {gflop:.1f}")
    best = {label: work / min(times[label]) for label, (_, work, _) in tasks.items()}
    peak = {p: max(v for k, v in best.items() if k.startswith("matmul") and k.endswith(p)) for p in precisions}
    print(f"{'task':<48} {'best GFLOP/s':>12} {'median':>8} {'of peak':>8}")
    for label, (_, work, precision) in tasks.items():
        median = work / statistics.median(times[label])
        share = "" if label.startswith("matmul") else f"{best[label] / peak[precision]:>8.0%}"
        print(f"{label:<48} {best[label]:>12.1f} {median:>8.1f} {share}")
    print(", ".join(f"{p} peak {peak[p]:.1f} GFLOP/s" for p in precisions))


if __name__ == "__main__":
    main()
