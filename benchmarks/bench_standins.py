"""The channels' differentiable stand-ins, forward + backward, on oneDNN's and on ATen's own
convolutions, side by side.

    python benchmarks/bench_standins.py [--sizes 384x512 640x1024 3000x4000] [--threads 2]
        [--rounds 5] [--out benchmarks/results] [--name standins]

The attack runs the stand-ins under :func:`camo_engine.attack.loop.native_convolutions`; this
measures what that buys.  Each channel of the ``high`` panel that has a stand-in of its own is
timed on a random photo of each size (the sum of its output against a fixed random weight is
back-propagated to the photo).  The two kernels are timed round-robin, ``rounds`` times each,
after one untimed call of each, so that load on the shared CPU hits both alike; the best and the
median are printed, and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from camo_engine.attack.loop import native_convolutions
from camo_engine.benchmarks.bench_brisque import parse_size, write
from camo_engine.benchmarks.harness import environment
from camo_engine.threat import Channel
from camo_engine.threat.panels import HIGH_CHANNELS

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def time_pass(channel: Channel, x: torch.Tensor, weight: torch.Tensor, native: bool) -> float:
    """Seconds for one forward + backward of ``channel``'s stand-in on ``x``."""
    started = time.perf_counter()
    with native_convolutions(native):
        y = channel.torch(x)
        torch.autograd.backward(y, weight[..., : y.shape[-2], : y.shape[-1]])
    x.grad = None
    return time.perf_counter() - started


def bench(size: tuple[int, int], rounds: int) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, *size, generator=generator).requires_grad_(True)
    weight = torch.randn(1, 3, *size, generator=generator)
    rows = []
    for spec in (c for c in HIGH_CHANNELS if c != "none"):
        channel = Channel.parse(spec)
        times: dict[bool, list[float]] = {False: [], True: []}
        for native in times:
            time_pass(channel, x, weight, native)  # warm-up
        for _ in range(rounds):
            for native in times:
                times[native].append(time_pass(channel, x, weight, native))
        row = {"channel": spec, "height": size[0], "width": size[1], "rounds": rounds}
        for native, label in ((False, "onednn"), (True, "native")):
            row[f"{label}_best_ms"] = 1e3 * min(times[native])
            row[f"{label}_median_ms"] = 1e3 * statistics.median(times[native])
        row["onednn_over_native"] = row["onednn_median_ms"] / row["native_median_ms"]
        rows.append(row)
        print(f"{size[0]}x{size[1]:<5} {spec:<28} oneDNN {row['onednn_median_ms']:8.1f} ms (best "
              f"{row['onednn_best_ms']:.1f})  ATen {row['native_median_ms']:8.1f} ms (best {row['native_best_ms']:.1f})"
              f"  {row['onednn_over_native']:.2f}x", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[(384, 512), (640, 1024), (3000, 4000)],
                        help="HxW (height first)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--name", default="standins")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = {"threads": args.threads, **environment()}  # before the runs: their commit
    rows = [row for size in args.sizes for row in bench(size, args.rounds)]
    write(args.out, args.name, rows, {**settings, "load_average_after": os.getloadavg()[0]})
    print(f"wrote {args.out / args.name}.csv/.json")


if __name__ == "__main__":
    main()
