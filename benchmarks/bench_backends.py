"""Forward and forward+gradient time per batch, torch vs onnxruntime, side by side.

    python benchmarks/bench_backends.py [--victims ...] [--batches 1 4 16] [--repeats 5] [--out DIR]

Victims: efficientnet-lite0 (real weights), resnet50-places365 (the architecture with seeded
random weights: the timing does not depend on them), brisque.  Two threads for both runtimes.
Each cell: warm-up runs, then ``repeats`` timed runs; the table shows the median and the
spread (max - min) in milliseconds, and the 1-minute load average when the cell finished.
Exports are cached (see ``OnnxRuntimeBackend.from_victim``).  Writes ``results/backends.csv``
and ``results/backends.md`` (or into ``--out DIR``), a table with both backends side by side and
their ratio.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

# Idle threads wait passively in both runtimes.  Spinning is faster on a free CPU, but on this
# shared, oversubscribed one a spinning thread waits for a descheduled partner: one
# EfficientNet-Lite0 forward took 6 s with torch's default OpenMP policy and 0.05 s with this.
# Set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from camo_engine.backends import TorchBackend  # noqa: E402
from camo_engine.backends.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from camo_engine.export.examples import (  # noqa: E402
    example_batch,
    example_targets,
    victim_geometries,
)
from camo_engine.victims.base import Victim  # noqa: E402

THREADS = 2
RESULTS = Path(__file__).parent / "results"
CSV_NAME, TABLE_NAME = "backends.csv", "backends.md"


def load(name: str) -> Victim:
    if name == "resnet50-places365":
        from camo_engine.victims.places365 import (
            ResNet50Places365,
            places365_architecture,
        )

        torch.manual_seed(365)
        return ResNet50Places365(places365_architecture())
    from camo_engine.victims import load_victim

    # ONNX graphs need a fixed input geometry: BRISQUE's 512x384 view, not its native default.
    return load_victim(name, **({"long_side": 512, "short_side": 384} if name == "brisque" else {}))


def timed(fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victims", nargs="+", default=["efficientnet-lite0", "resnet50-places365", "brisque"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"folder for {CSV_NAME} and {TABLE_NAME}")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)

    rows = []
    for name in args.victims:
        victim = load(name)
        backends = {
            "torch": TorchBackend(victim),
            "onnxruntime": OnnxRuntimeBackend.from_victim(
                victim, cache_dir=args.cache_dir, intra_op_threads=THREADS, inter_op_threads=1, spinning=False
            ),
        }
        geometry = victim_geometries(victim)[0]
        for size in args.batches:
            batch = example_batch(victim, geometry, size)
            targets = example_targets(victim, batch)
            for backend_name, backend in backends.items():
                for pass_name, fn in (
                    ("forward", lambda: backend.outputs(batch)),
                    ("forward+grad", lambda: backend.step(batch, targets)),
                ):
                    times = timed(fn, args.warmup, args.repeats)
                    rows.append(
                        {
                            "victim": name,
                            "geometry": f"{geometry[0]}x{geometry[1]}",
                            "batch": size,
                            "backend": backend_name,
                            "pass": pass_name,
                            "median_ms": round(statistics.median(times), 2),
                            "spread_ms": round(max(times) - min(times), 2),
                            "per_image_ms": round(statistics.median(times) / size, 2),
                            "threads": THREADS,
                            "repeats": args.repeats,
                            "load_1min": round(os.getloadavg()[0], 2),
                        }
                    )
                    print(_line(rows[-1]), flush=True)
                    # Rewritten after every cell, so that an interrupted run keeps what it measured.
                    write(rows, args.out)
    print(f"\n{(args.out / TABLE_NAME).read_text()}\nwrote {args.out / CSV_NAME} and {args.out / TABLE_NAME}")


def write(rows: list[dict[str, object]], out: Path) -> None:
    """The CSV of every cell and the side-by-side table, in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / CSV_NAME, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / TABLE_NAME).write_text(side_by_side(rows))


def side_by_side(rows: list[dict[str, object]]) -> str:
    """A Markdown table: one line per victim, batch and pass, torch and onnxruntime medians."""
    cells = {(r["victim"], r["batch"], r["pass"], r["backend"]): r for r in rows}
    lines = [
        "| victim | geometry | batch | pass | torch ms | onnxruntime ms | onnxruntime / torch | load |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for victim, batch, pass_name, backend in cells:
        if backend != "torch" or (victim, batch, pass_name, "onnxruntime") not in cells:
            continue
        torch_row, ort_row = cells[victim, batch, pass_name, "torch"], cells[victim, batch, pass_name, "onnxruntime"]
        ratio = ort_row["median_ms"] / torch_row["median_ms"]
        lines.append(
            f"| {victim} | {torch_row['geometry']} | {batch} | {pass_name} | {torch_row['median_ms']:.1f} | "
            f"{ort_row['median_ms']:.1f} | {ratio:.2f} | {ort_row['load_1min']} |"
        )
    return "\n".join(lines) + "\n"


def _line(row: dict[str, object]) -> str:
    return (
        f"{row['victim']:<20} {row['batch']:>3} {row['backend']:<12} {row['pass']:<13} "
        f"median {row['median_ms']:>9.1f} ms  spread {row['spread_ms']:>7.1f} ms  "
        f"{row['per_image_ms']:>8.1f} ms/image"
    )


if __name__ == "__main__":
    main()
