"""Memory: peak RSS protecting one 12-megapixel photo, and RSS over a stream of 1,000 photos.

    python benchmarks/bench_memory.py [--victims efficientnet-lite0,brisque] [--photos 1000]

Both go through the command line, ``python -m camo_engine protect``, in a child process, so the
figures are the whole program's: imports, model, decode, attack, encode and report.

* 12 MP: a sample photo upscaled to 4000x3000 and saved as JPEG; the child's peak RSS is the
  kernel's ``ru_maxrss`` for it (``os.wait4``).  Target: under 3 GiB.
* Stream: ``--photos`` small JPEGs (crops of the sample photos, 96 to 192 px) in one folder,
  protected with few steps; the child's RSS is sampled from ``/proc`` while the report grows,
  and printed after every 100 photos.  Flat figures mean memory does not grow with
  the number of photos.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from camo_engine.io.load import load_image
from camo_engine.samples import sample_paths
from PIL import Image

TWELVE_MP = 12.0  # megapixels of the large photo, 4000x3000 (4:3)


def protect_command(inputs: Path, output: Path, victim: str, steps: int) -> list[str]:
    return [sys.executable, "-m", "camo_engine", "protect", str(inputs), "-o", str(output),
            "--victim", victim, "--steps", str(steps)]


def make_large(folder: Path, megapixels: float) -> Path:
    """The first sample photo resized to ``megapixels`` at 4:3 (12: 4000x3000), as a JPEG file."""
    rgb = load_image(sample_paths()[0]).rgb
    height = round((megapixels * 1e6 * 3 / 4) ** 0.5)
    path = folder / f"large-{megapixels:g}mp.jpg"
    Image.fromarray(rgb).resize((round(height * 4 / 3), height), Image.Resampling.BICUBIC).save(path, quality=95)
    return path


def make_stream(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` small JPEGs: random crops of the sample photos, 96 to 192 px on a side."""
    folder.mkdir()
    photos = [load_image(p).rgb for p in sample_paths()]
    rng = np.random.default_rng(seed)
    for i in range(count):
        rgb = photos[i % len(photos)]
        h, w = (int(rng.integers(96, 193)) for _ in range(2))
        y, x = int(rng.integers(0, rgb.shape[0] - h)), int(rng.integers(0, rgb.shape[1] - w))
        Image.fromarray(rgb[y : y + h, x : x + w]).save(folder / f"photo-{i:04d}.jpg", quality=92)
    return folder


def rss_mib(pid: int) -> float:
    """Current resident set size of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def peak_large(folder: Path, victim: str, steps: int, megapixels: float) -> float:
    """Peak RSS (MiB) of the CLI protecting one photo of ``megapixels``."""
    photo = folder / f"large-{megapixels:g}mp.jpg"
    if not photo.exists():
        make_large(folder, megapixels)
    child = subprocess.Popen(protect_command(photo, folder / f"out-large-{victim}", victim, steps),
                             stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not the largest child's
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise RuntimeError(f"protect exited with {child.returncode}")
    return usage.ru_maxrss / 1024  # KiB on Linux


def stream(folder: Path, victim: str, steps: int, count: int) -> list[tuple[int, float, float]]:
    """(photos done, RSS MiB, seconds) samples while the CLI protects ``count`` photos; each
    milestone is printed as it is passed, so a run cut short still shows its figures."""
    inputs = make_stream(folder / "stream", count)
    output = folder / "out-stream"
    report = output / "report.jsonl"
    child = subprocess.Popen(protect_command(inputs, output, victim, steps),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = []
    milestones = list(range(100, count + 1, 100))
    start = time.perf_counter()
    while child.poll() is None:
        done = sum(1 for _ in report.open()) if report.exists() else 0
        try:
            samples.append((done, rss_mib(child.pid), time.perf_counter() - start))
        except (OSError, RuntimeError):  # the child exited between poll and read
            break
        while milestones and done >= milestones[0]:
            print(f"  after {done:>5} photos ({samples[-1][2]:5.0f} s): RSS {samples[-1][1]:6.0f} MiB", flush=True)
            milestones.pop(0)
        time.sleep(0.5)
    if child.returncode not in (0, None):
        raise RuntimeError(f"protect exited with {child.returncode}")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victims", default="efficientnet-lite0,brisque", help="for the 12-MP photo")
    parser.add_argument("--steps", type=int, default=10, help="steps for the 12-MP photo")
    parser.add_argument("--megapixels", type=float, default=TWELVE_MP, help="size of the large photo")
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--stream-victim", default="efficientnet-lite0")
    parser.add_argument("--stream-steps", type=int, default=3)
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for victim in args.victims.split(","):
            start = time.perf_counter()
            peak = peak_large(folder, victim, args.steps, args.megapixels)
            print(f"{args.megapixels:g} MP, {victim}, {args.steps} steps: peak RSS {peak:.0f} MiB "
                  f"({peak / 1024:.2f} GiB, target < 3 GiB), {time.perf_counter() - start:.0f} s", flush=True)
        if args.photos:
            print(f"stream of {args.photos} photos, {args.stream_victim}, {args.stream_steps} steps:", flush=True)
            samples = stream(folder, args.stream_victim, args.stream_steps, args.photos)
            print(f"  RSS over the run: min {min(s[1] for s in samples):.0f} MiB, "
                  f"max {max(s[1] for s in samples):.0f} MiB")
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
