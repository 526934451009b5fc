"""BRISQUE at native resolution: forward + input gradient per image-step, today's plain-op
formulation against the fused kernel (camo_engine.kernels.brisque) and piq's BRISQUE; and the
whole ``camo-engine protect`` of a 12-megapixel photo with either.

    python benchmarks/bench_brisque.py [--out benchmarks/results] [--threads 2]
        [--sizes 320x512 640x1024 3000x4000] [--batches 1 4] [--variants plain fused fused_threads piq compile]
        [--name brisque] [--protect [--protect-strength medium]] [--accuracy] [--kernel] [--no-steps]

Steps (``NAME_steps.csv/json``): one image-step is what the attack runs per photo and step:
the grey conversion, the victim's score, and the gradient of the attack loss back to the RGB
pixels.  ``plain`` is today's victim op for op (``plain_formulation``: torch ops for the grey
conversion and the MSCN moments), ``fused`` the kernels, ``fused_threads`` the kernels with
their bands on Python threads (the fallback where torch has no OpenMP threads to lend).  The photos are the bundled samples
resized to each size (a batch holds different ones).  Each configuration gets warm-up calls
(numba loads its kernel, pages settle), then timed rounds in which the variants run in a fresh
random order, so a busy machine slows them alike.  Reported per image: the median and fastest
wall time, the median CPU time of the process (all threads; on a loaded machine it shows the
work apart from the waiting), and the step's peak memory: the peak RSS during the step above
the RSS before it (Linux ``/proc/self/clear_refs`` resets the peak between variants).

``compile`` (not by default: inductor compiles for each image size, 40 to 90 s here): the
plain formulation's MSCN moment sums through ``torch.compile``, the alternative to the kernel.

piq: ``piq.brisque`` downloads its SVR weights at run time (``piq/brisque.py``, ``_score_svr``
calls ``load_url`` on a GitHub release), which this project never does and this machine cannot.
Its timing here runs all of piq's own code with that one call answered locally by zero weights
of the LIVE model's shape (770 support vectors); the SVR is a (B, 36) x (36, 770) product, so
the time is piq's, but its scores are meaningless and are not compared.

Mixed sizes (``NAME_mixed.csv/json``): four photos of different sizes in one ``network_mixed``
call against one call per photo (fused).

``--protect`` (``NAME_protect.csv/json``): ``camo-engine protect --strength
PROTECT_STRENGTH`` of one 12 MP photo in a child process per formulation (``plain`` and
``fused``, as far as ``--variants`` names them), the victim at the photo's own resolution
(its default; ``plain`` runs the whole command in ``plain_formulation``).  The photo: the ``china`` sample upscaled to
4000x3000 (Lanczos) with Gaussian grain of sigma 4/255, as JPEG 95.  The grain stands in for a
camera's: the plain upscale is so smooth that BRISQUE at native resolution already rates it
above the threshold (65 to 79 for every sample), and the attack would take no step.  Reported:
the child's wall seconds, peak RSS (``wait4``), steps and verdict from its report.

``--kernel`` (``NAME_kernel.csv/json``): the kernel alone on one thread, CPU time of the moment
sums and of sums + gradient per size, of the grey conversion (kernel and torch ops), and each
numba row function alone in ns per pixel.

``--accuracy`` (``NAME_accuracy.csv/json``): per sample photo at native resolution, and per
attacked photo written as PNG and read back: the fused and today's scores against the exact one
(the plain formulation in float64), and both fp32 gradients' relative error against the
float64 one, as ``export/check.py`` measures it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from camo_engine.io import strict_json
from camo_engine.kernels.brisque import plain_formulation
from camo_engine.samples import sample_paths
from camo_engine.victims.brisque import Brisque

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
LIVE_SUPPORT_VECTORS = 770


# -- the variants -------------------------------------------------------------------------------
def victim_step(victim: Brisque, plain: bool = False) -> Callable[[list[torch.Tensor]], float]:
    """One attack step's victim work on same-size RGB images: grey, score, loss gradient.

    ``plain``: all of it as before the kernels (``plain_formulation``: the torch ops of the grey
    conversion too), i.e. today's victim op for op."""

    def step(images: list[torch.Tensor]) -> float:
        with plain_formulation() if plain else contextlib.nullcontext():
            xs = [im.clone().requires_grad_(True) for im in images]
            batch = torch.stack([victim.preprocess(x) for x in xs])
            scores = victim.network(batch)
            loss = victim.loss(scores, torch.full_like(scores, victim.target))
            torch.autograd.grad(loss.sum(), xs)
            return float(scores.detach().mean())

    return step


def piq_step() -> Callable[[list[torch.Tensor]], float] | None:
    """piq's differentiable BRISQUE with its downloaded SVR weights answered locally (see the
    module docstring); None if piq is not installed."""
    try:
        # The module: ``piq.brisque`` is also the name of the function piq exports.
        piq_brisque = importlib.import_module("piq.brisque")
    except ImportError:
        return None

    def local_weights(url: str, map_location=None):  # noqa: ANN001 - load_url's signature
        return (
            torch.zeros(LIVE_SUPPORT_VECTORS, 1),
            torch.zeros(LIVE_SUPPORT_VECTORS, 36),
        )

    piq_brisque.load_url = local_weights

    def step(images: list[torch.Tensor]) -> float:
        x = torch.stack(images).requires_grad_(True)
        scores = piq_brisque.brisque(x, data_range=1.0, reduction="none")
        torch.autograd.grad(((scores - 70.0) ** 2).sum(), x)
        return float("nan")

    return step


def compiled_step() -> Callable[[list[torch.Tensor]], float]:
    """The plain formulation's per-pixel part (MSCN moment sums) through ``torch.compile``
    (inductor's C++ CPU code, one graph per image size; forward and backward)."""
    victim = Brisque(long_side=None, short_side=None, fused=False).eval()
    victim._moment_sums = torch.compile(victim._moment_sums, dynamic=False)
    return victim_step(victim)


def python_threads_step(victim: Brisque) -> Callable[[list[torch.Tensor]], float]:
    """The fused step with the kernel's bands on its own Python threads, as where torch has
    no OpenMP runtime (the kernel's fallback), instead of torch's OpenMP threads."""
    from camo_engine.kernels import brisque as kernel

    step = victim_step(victim)

    def run(images: list[torch.Tensor]) -> float:
        omp = kernel._omp_parallel
        kernel._omp_parallel = lambda: None
        try:
            return step(images)
        finally:
            kernel._omp_parallel = omp

    return run


def make_variants(names: list[str]) -> dict[str, Callable[[list[torch.Tensor]], float]]:
    native = dict(long_side=None, short_side=None)
    variants: dict[str, Callable[[list[torch.Tensor]], float] | None] = {
        "plain": victim_step(Brisque(**native).eval(), plain=True) if "plain" in names else None,
        "fused": victim_step(Brisque(**native).eval()) if "fused" in names else None,
        "fused_threads": python_threads_step(Brisque(**native).eval()) if "fused_threads" in names else None,
        "compile": compiled_step() if "compile" in names else None,
        "piq": piq_step() if "piq" in names else None,
    }
    if "piq" in names and variants["piq"] is None:
        print("piq is not installed (pip install piq): skipped")
    return {name: fn for name, fn in variants.items() if fn is not None}


# -- measuring ------------------------------------------------------------------------------------
def rss_bytes() -> tuple[int, int]:
    """(current RSS, peak RSS since the last reset) of this process."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def sample_images(size: tuple[int, int], count: int) -> list[torch.Tensor]:
    """``count`` sample photos resized (Lanczos) to ``size`` = (h, w), as (3, h, w) in [0, 1]."""
    paths = sample_paths()
    out = []
    for i in range(count):
        im = Image.open(paths[i % len(paths)]).convert("RGB").resize(size[::-1], Image.Resampling.LANCZOS)
        # Contiguous (3, h, w), as the engine's decoded photos are (jpeg.to_float).
        out.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).contiguous().float() / 255)
    return out


def time_variants(
    variants: dict[str, Callable[[], object]], warmup: int, rounds: int
) -> dict[str, dict[str, list[float]]]:
    """Wall, CPU seconds and peak step memory (bytes) per call, variants interleaved; and the
    wall seconds of each variant's first call (numba loads its kernels, inductor compiles)."""
    out = {name: {"wall": [], "cpu": [], "memory": [], "first": []} for name in variants}
    for name, run in variants.items():
        started = time.perf_counter()
        run()
        out[name]["first"].append(time.perf_counter() - started)
        for _ in range(warmup - 1):
            run()
    order = list(variants)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            before, _ = rss_bytes()
            reset_peak()
            wall, cpu = time.perf_counter(), time.process_time()
            variants[name]()
            out[name]["wall"].append(time.perf_counter() - wall)
            out[name]["cpu"].append(time.process_time() - cpu)
            out[name]["memory"].append(rss_bytes()[1] - before)
    return out


def bench_steps(args: argparse.Namespace, variants: dict) -> list[dict]:
    rows = []
    for size in args.sizes:
        megapixels = size[0] * size[1] / 1e6
        for batch in args.batches:
            images = sample_images(size, batch)
            runs = {name: (lambda fn=fn: fn(images)) for name, fn in variants.items()}
            rounds = args.rounds or max(3, min(15, round(20 / (megapixels * batch))))
            results = time_variants(runs, args.warmup, rounds)
            for name, times in results.items():
                row = {
                    "variant": name,
                    "height": size[0],
                    "width": size[1],
                    "batch": batch,
                    "threads": torch.get_num_threads(),
                    "rounds": rounds,
                    "ms_per_image_median": 1e3 * statistics.median(times["wall"]) / batch,
                    "ms_per_image_min": 1e3 * min(times["wall"]) / batch,
                    "cpu_ms_per_image_median": 1e3 * statistics.median(times["cpu"]) / batch,
                    "step_peak_mib": max(times["memory"]) / 2**20,
                    "first_call_s": times["first"][0],
                }
                rows.append(row)
                print(
                    f"{size[0]:>5}x{size[1]:<5} batch {batch}  {name:<6} "
                    f"{row['ms_per_image_median']:>9.1f} ms/image (min {row['ms_per_image_min']:.1f}, "
                    f"CPU {row['cpu_ms_per_image_median']:.1f})  step peak {row['step_peak_mib']:>7.0f} MiB",
                    flush=True,
                )
            config = rows[-len(results) :]
            plain = next((r for r in config if r["variant"] == "plain"), None)
            for row in config:
                if plain is not None:
                    row["speedup_vs_plain"] = plain["ms_per_image_median"] / row["ms_per_image_median"]
    return rows


def bench_mixed(args: argparse.Namespace) -> list[dict]:
    """Four photos of different sizes: one ``network_mixed`` call against one call each."""
    victim = Brisque(long_side=None, short_side=None).eval()
    sizes = [(320, 512), (427, 640), (640, 1024), (300, 451)]
    images = [sample_images(size, 1)[0] for size in sizes]

    def together() -> None:
        xs = [im.clone().requires_grad_(True) for im in images]
        scores = victim.network_mixed([victim.preprocess(x) for x in xs])
        torch.autograd.grad(victim.loss(scores, torch.full_like(scores, victim.target)).sum(), xs)

    def apart() -> None:
        for im in images:
            victim_step(victim)([im])

    results = time_variants({"one call": together, "one call per photo": apart}, args.warmup, args.rounds or 15)
    rows = []
    for name, times in results.items():
        rows.append({
            "variant": name,
            "sizes": " ".join(f"{h}x{w}" for h, w in sizes),
            "threads": torch.get_num_threads(),
            "ms_median": 1e3 * statistics.median(times["wall"]),
            "ms_min": 1e3 * min(times["wall"]),
            "cpu_ms_median": 1e3 * statistics.median(times["cpu"]),
        })
        print(f"mixed sizes, {name:<20} {rows[-1]['ms_median']:8.1f} ms (min {rows[-1]['ms_min']:.1f}, CPU {rows[-1]['cpu_ms_median']:.1f})")
    return rows


# -- the kernel alone -----------------------------------------------------------------------------
def bench_kernel(args: argparse.Namespace) -> list[dict]:
    """The kernel alone on one thread, CPU time: the moment sums, and sums + gradient, per
    size; then each row function alone at the first size's width, in ns per pixel."""
    from camo_engine.kernels import _brisque_rows as rows
    from camo_engine.kernels.brisque import mscn_moment_sums, weighted_channels
    from camo_engine.victims.brisque import GRAY_WEIGHTS, MSCN_SPEC

    def cpu_ms(run: Callable[[], object], rounds: int) -> float:
        run()
        times = []
        for _ in range(rounds):
            started = time.process_time()
            run()
            times.append(time.process_time() - started)
        return 1e3 * statistics.median(times)

    out = []
    # numba loads the compiled loops from its cache, or compiles them (an empty NUMBA_CACHE_DIR).
    started = time.perf_counter()
    x = torch.rand(8, 8, requires_grad=True)
    mscn_moment_sums(x, MSCN_SPEC, threads=1).sum().backward()
    out.append({"what": "first call", "seconds": time.perf_counter() - started})
    print(f"kernel first call (float32): {out[-1]['seconds']:.1f} s", flush=True)
    for h, w in args.sizes:
        gray = sample_images((h, w), 1)[0].mean(0)
        weights = torch.randn(1, 2, 5, 4)

        def forward() -> None:
            mscn_moment_sums(gray, MSCN_SPEC, threads=1)

        def both() -> None:
            x = gray.clone().requires_grad_(True)
            (mscn_moment_sums(x, MSCN_SPEC, threads=1) * weights).sum().backward()

        rounds = max(3, min(15, round(10 / (h * w / 1e6))))
        row = {"what": "kernel", "height": h, "width": w, "forward_ms": cpu_ms(forward, rounds),
               "forward_backward_ms": cpu_ms(both, rounds)}
        row["ns_per_pixel"] = 1e6 * row["forward_backward_ms"] / (h * w)
        out.append(row)
        print(f"kernel {h}x{w}, 1 thread: sums {row['forward_ms']:.1f} ms, sums + gradient "
              f"{row['forward_backward_ms']:.1f} ms CPU ({row['ns_per_pixel']:.1f} ns per pixel)", flush=True)
        rgb = sample_images((h, w), 1)[0]
        for what, plain in (("grey conversion, kernel", False), ("grey conversion, torch ops", True)):
            with plain_formulation() if plain else contextlib.nullcontext():
                x = rgb.clone().requires_grad_(True)
                grey = lambda: weighted_channels(x, GRAY_WEIGHTS)  # noqa: E731
                row = {"what": what, "height": h, "width": w, "forward_ms": cpu_ms(grey, rounds),
                       "forward_backward_ms": cpu_ms(lambda: torch.autograd.grad(grey().sum(), x), rounds)}
            out.append(row)
            print(f"{what} {h}x{w}: forward {row['forward_ms']:.1f} ms, forward + gradient "
                  f"{row['forward_backward_ms']:.1f} ms CPU", flush=True)

    w = args.sizes[0][1]
    taps, half_taps = np.asarray(MSCN_SPEC.taps), np.asarray(MSCN_SPEC.half_taps)
    mscn_c, eps2 = MSCN_SPEC.c, MSCN_SPEC.var_eps**2
    rng = np.random.default_rng(0)
    g = rng.random((16, w)).astype(np.float32)
    ring, m = rng.random((rows.RING, w)), rng.standard_normal((rows.RING, w + 2))
    pad, sq, zero = np.zeros(w + 6), np.zeros(w + 6), np.zeros(w + 2)
    a, b, c, d = (np.empty(w) for _ in range(4))
    sums, coef, half = np.zeros(20), rng.random((5, 3)), np.empty(w // 2)
    d_half, extra = rng.random((8, w // 2)), np.zeros(w)
    functions = {
        "horizontal blur of g and g^2": lambda: rows._hblur(g[0], pad, sq, a, b, taps),
        "vertical blur (one quantity)": lambda: rows._vblur(ring, 3, 16, zero, taps, a),
        "MSCN row (two vertical blurs, sqrt, divisions)": lambda: rows._mscn_row(
            g[3], 3, 16, ring, ring, zero, taps, mscn_c, eps2, m[0], a, b, c, d),
        "the 20 moment sums": lambda: rows._row_sums(m[1], m[2], sums),
        "d m from the nine map values": lambda: rows._dm_row(m[1], m[2], m[3], coef, a),
        "7-tap blur (one quantity)": lambda: rows._blur7(pad, a, taps, 0),
        "half-scale row (per full-size pixel)": lambda: rows._half_row(g, 3, half, half_taps),
        "half-scale adjoint row": lambda: rows._half_adjoint_row(d_half, 5, 16, extra, half_taps),
    }
    for name, run in functions.items():
        repeat = 2000
        best = min(cpu_ms(lambda: [run() for _ in range(repeat)], 1) for _ in range(5))
        out.append({"what": name, "width": w, "ns_per_pixel": 1e6 * best / (repeat * w)})
        print(f"  {name:<48} {out[-1]['ns_per_pixel']:.2f} ns per pixel", flush=True)
    return out


# -- whole protect --------------------------------------------------------------------------------
PROTECT_CHILD = """
import contextlib, sys
from camo_engine.cli import main
from camo_engine.kernels.brisque import plain_formulation
sys.argv = ["camo-engine", "protect", {photo!r}, "-o", {out!r}, "--victim", "brisque", "--strength", {strength!r}]
with plain_formulation() if not {fused} else contextlib.nullcontext():
    main()
"""


def make_12mp(folder: Path) -> Path:
    """``china`` upscaled to 4000x3000 with sigma-4/255 grain (see the module docstring)."""
    photo = next(p for p in sample_paths() if p.stem == "china")
    big = np.asarray(Image.open(photo).convert("RGB").resize((4000, 3000), Image.Resampling.LANCZOS))
    grain = np.random.default_rng(0).normal(0, 4, big.shape)
    path = folder / "twelve-mp.jpg"
    Image.fromarray(np.clip(big + grain, 0, 255).round().astype(np.uint8)).save(path, quality=95)
    return path


def bench_protect(args: argparse.Namespace) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        photo = make_12mp(Path(tmp))
        for name, fused in (("plain", False), ("fused", True)):
            if name not in args.variants:
                continue
            out = Path(tmp) / f"out-{name}"
            script = PROTECT_CHILD.format(fused=fused, photo=str(photo), out=str(out), strength=args.protect_strength)
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            started = time.perf_counter()
            child = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL)
            _, status, usage = os.wait4(child.pid, 0)
            seconds = time.perf_counter() - started
            if status != 0:
                raise RuntimeError(f"protect with the {name} formulation failed ({status})")
            report = json.loads((out / "report.jsonl").read_text().splitlines()[0])
            rows.append({
                "variant": name,
                "strength": args.protect_strength,
                "photo": "4000x3000",
                "seconds": seconds,
                "peak_rss_mib": usage.ru_maxrss / 1024,
                "steps": report.get("steps"),
                "protected": report.get("protected"),
                "before": report.get("before"),
                "after": report.get("after"),
            })
            print(f"protect 12 MP, {name:<6} at {args.protect_strength:<6} {seconds:7.1f} s  peak RSS {rows[-1]['peak_rss_mib']:6.0f} MiB  "
                  f"steps {rows[-1]['steps']}  {rows[-1]['before']} -> {rows[-1]['after']}", flush=True)
    return rows


# -- accuracy -------------------------------------------------------------------------------------
def bench_accuracy() -> list[dict]:
    from camo_engine import AttackConfig, IFGSM
    from camo_engine.backends.torch_backend import TorchBackend
    from camo_engine.export.check import relative_error

    fused = Brisque(long_side=None, short_side=None).eval()
    plain = Brisque(long_side=None, short_side=None, fused=False).eval()
    exact = Brisque(long_side=None, short_side=None, fused=False).double().eval()

    def grad(victim: Brisque, gray: torch.Tensor) -> tuple[float, torch.Tensor]:
        x = gray.clone().requires_grad_(True)
        score = victim.network(x)
        return float(score), torch.autograd.grad(score.sum(), x)[0]

    def row(name: str, rgb: np.ndarray) -> dict:
        gray = fused.preprocess(torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255)[None]
        (f, gf), (p, gp), (e, ge) = grad(fused, gray), grad(plain, gray), grad(exact, gray.double())
        out = {
            "photo": name, "height": rgb.shape[0], "width": rgb.shape[1],
            "exact": e, "fused": f, "plain": p, "fused_minus_plain": f - p,
            "fused_minus_exact": f - e, "plain_minus_exact": p - e,
            "fused_grad_rel_err": relative_error(gf, ge), "plain_grad_rel_err": relative_error(gp, ge),
        }
        print(f"{name:<28} {rgb.shape[0]:>4}x{rgb.shape[1]:<4} exact {e:8.4f}  fused-exact {f - e:+.4f}  "
              f"plain-exact {p - e:+.4f}  grad err fused {out['fused_grad_rel_err']:.1e} plain {out['plain_grad_rel_err']:.1e}",
              flush=True)
        return out

    rows, originals = [], []
    for path in sample_paths():
        rgb = np.asarray(Image.open(path).convert("RGB"))
        rows.append(row(path.stem, rgb))
        im = Image.fromarray(rgb)
        im.thumbnail((320, 320), Image.Resampling.LANCZOS)
        originals.append((path.stem, np.asarray(im)))
    attack = IFGSM(fused, TorchBackend(fused), AttackConfig(steps=3, alpha=2 / 255))
    images = [torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255 for _, rgb in originals]
    with tempfile.TemporaryDirectory() as tmp:
        for result in attack.run(images):
            path = Path(tmp) / f"{originals[result.index][0]}.png"
            Image.fromarray(result.rgb).save(path)
            rows.append(row(f"attacked {path.name} ({result.steps} steps)", np.asarray(Image.open(path).convert("RGB"))))
    return rows


# -- output ---------------------------------------------------------------------------------------
def write(out: Path, name: str, rows: list[dict], settings: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / f"{name}.csv").open("w", newline="") as f:
        fields = list(dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    (out / f"{name}.json").write_text(strict_json.dumps({"settings": settings, "rows": rows}, indent=1) + "\n")


def parse_size(text: str) -> tuple[int, int]:
    h, _, w = text.partition("x")
    return int(h), int(w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the CSV/JSON files")
    parser.add_argument("--name", default="brisque", help="file name prefix: NAME_steps.csv, ...")
    parser.add_argument("--threads", type=int, default=2, help="torch (and kernel) threads")
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[(320, 512), (640, 1024), (3000, 4000)],
                        help="HxW (height first)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--variants", nargs="+", default=["plain", "fused", "piq"])
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (at least 1)")
    parser.add_argument("--rounds", type=int, help="timed rounds (default: 20 / megapixels in the batch, 3 to 15)")
    parser.add_argument("--no-steps", action="store_true", help="skip the per-step grid")
    parser.add_argument("--protect", action="store_true", help="time the whole protect of a 12 MP photo (the plain and fused --variants)")
    parser.add_argument("--protect-strength", default="medium", help="the protect's --strength")
    parser.add_argument("--accuracy", action="store_true", help="scores and gradients against float64")
    parser.add_argument("--kernel", action="store_true", help="the kernel alone, one thread, CPU time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = {
        "command": " ".join(sys.argv),
        "threads": args.threads,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg()[0],
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(f"threads {args.threads}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if not args.no_steps:
        steps = bench_steps(args, make_variants(args.variants))
        mixed = bench_mixed(args)
        settings["load_average_after"] = os.getloadavg()[0]
        write(args.out, f"{args.name}_steps", steps, settings)
        write(args.out, f"{args.name}_mixed", mixed, settings)
    if args.protect:
        write(args.out, f"{args.name}_protect", bench_protect(args), {**settings, "load_average_after": os.getloadavg()[0]})
    if args.kernel:
        write(args.out, f"{args.name}_kernel", bench_kernel(args), settings)
    if args.accuracy:
        write(args.out, f"{args.name}_accuracy", bench_accuracy(), settings)
    print(f"load average after: {os.getloadavg()[0]:.1f}; results in {args.out}")


if __name__ == "__main__":
    main()
