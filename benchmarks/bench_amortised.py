"""The amortised protector against plain I-FGSM: success after JPEG 90 and images/s, side by side.

    python benchmarks/bench_amortised.py [--victims efficientnet-lite0,brisque] [--images 32]

Workload: the bench's default images (the sample photos, then deterministic crops of them, short
side 384).  For each victim the protector is loaded from ``results/protectors/VICTIM.pt``, or
trained with the settings below and saved there when missing (or with ``--retrain``).  With
``--ablate-jpeg`` a second protector trained without the differentiable JPEG is measured too.

Settings are timed round-robin (each run of every setting, then the next run), so that the
shared CPU's drifting load hits them alike; images/s is the median over runs and includes the
protector's forward pass.  On a CPU shared with other jobs wall time swings several-fold, so
the process's CPU seconds per image (all threads) are reported beside it: they count the work
done, not the wait for a core.  Success is the engine's own verdict after real JPEG re-encoding,
against the original's verdict after the same re-encoding; JPEG-alone shares are in brackets.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from camo_engine import jpeg
from camo_engine.amortised import ProtectorNet, load_protector, protector_inits, save_protector
from camo_engine.attack import IFGSM, AttackConfig
from camo_engine.backends import TorchBackend
from camo_engine.bench import CountingBackend, Outcome, bench_images, outcome_row
from camo_engine.imageio import load_image
from camo_engine.samples import sample_paths
from camo_engine.train_protector import TrainConfig, train_protector
from camo_engine.victims import Victim, load_victim

RESULTS = Path(__file__).resolve().parent / "results"
PROTECTORS = RESULTS / "protectors"
# Budgets that fit minutes on 2 (shared) CPU cores; crops at the victim's input short side.
TRAINING = {
    "efficientnet-lite0": TrainConfig(steps=300, batch_size=8, crop=224, lr=1e-2),
    "brisque": TrainConfig(steps=150, batch_size=8, crop=384, lr=1e-2),
}
FINISH_STEPS = (0, 5, 10)
PLAIN_STEPS = (5, 10, AttackConfig().steps)


def protector(name: str, victim: Victim, config: TrainConfig, path: Path, retrain: bool) -> ProtectorNet:
    """The saved protector if it was trained with ``config``, else a freshly trained one."""
    if path.is_file() and not retrain:
        model, meta = load_protector(path)
        if meta.get("training") == dataclasses.asdict(config):
            return model
        print(f"{path.name}: trained with other settings, retraining")
    photos = [jpeg.to_float(load_image(p).rgb) for p in sample_paths()]
    start = time.perf_counter()
    model = train_protector(victim, photos, config, on_step=log_losses)
    seconds = time.perf_counter() - start
    meta = {"victim": name, "training": dataclasses.asdict(config), "train_seconds": round(seconds)}
    save_protector(model, path, meta)
    print(f"trained {path.name} in {seconds:.0f} s")
    return model


def log_losses(step: int, losses: dict[str, float]) -> None:
    print(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in losses.items()), flush=True)


def ifgsm(victim: Victim, backend: CountingBackend, config: AttackConfig, net: ProtectorNet | None):
    """The engine's I-FGSM, started from the protector's output when there is one."""

    def run(images: list[np.ndarray]) -> Outcome:
        backend.reset()
        floats = [jpeg.to_float(im) for im in images]
        inits = None if net is None else protector_inits(net, floats)
        results = sorted(IFGSM(victim, backend, config).run(floats, inits=inits), key=lambda r: r.index)
        return Outcome(
            adversarial=[r.rgb for r in results],
            rows=backend.rows,
            batch_steps=backend.steps,
            steps=[r.steps for r in results],
            protected=[r.protected for r in results],
            alone=[r.jpeg_alone for r in results],
        )

    return run


def compare(name: str, args: argparse.Namespace, images: list[np.ndarray]) -> list[dict]:
    """Rows for one victim: protector (+ finishing steps), ablation, plain I-FGSM."""
    victim = load_victim(name)
    backend = CountingBackend(TorchBackend(victim))
    config = TRAINING[name]
    nets = {"protector": protector(name, victim, config, PROTECTORS / f"{name}.pt", args.retrain)}
    if args.ablate_jpeg:
        plain = dataclasses.replace(config, jpeg_quality=None)
        nets["protector, no diff JPEG"] = protector(name, victim, plain, PROTECTORS / f"{name}-nojpeg.pt", args.retrain)
    settings = [(f"{label} + {n} steps", net, n) for label, net in nets.items() for n in FINISH_STEPS]
    settings += [(f"I-FGSM {n} steps", None, n) for n in PLAIN_STEPS]
    tools = {
        label: ifgsm(victim, backend, AttackConfig(steps=n, batch_size=args.batch_size), net)
        for label, net, n in settings
    }
    next(iter(tools.values()))(images[:2])  # warm-up: thread pool, allocator, first calls
    walls: dict[str, list[float]] = {label: [] for label in tools}
    cpus: dict[str, list[float]] = {label: [] for label in tools}
    outcomes: dict[str, Outcome] = {}
    for _ in range(args.runs):
        for label, tool in tools.items():
            start, cpu = time.perf_counter(), time.process_time()
            outcomes[label] = tool(images)
            walls[label].append(time.perf_counter() - start)
            cpus[label].append(time.process_time() - cpu)
            print(f"{name} | {label}: {walls[label][-1]:.1f} s, {cpus[label][-1]:.1f} CPU s", flush=True)
    return [
        {"victim": name, "setting": label,
         **outcome_row(victim, backend, images, walls[label], outcomes[label], math.nan, 90),
         "cpu_s_per_image": statistics.median(cpus[label]) / len(images),
         "win_rate": statistics.fmean(p and not a for p, a in zip(outcomes[label].protected, outcomes[label].alone))}
        for label in tools
    ]


def table(rows: list[dict]) -> Table:
    out = Table(title="amortised protector vs I-FGSM (eps 8/255, alpha 1/255), verdicts after JPEG 90")
    for column in ("victim", "setting", "success (JPEG alone)", "wins", "images/s", "CPU s/image", "mean steps", "PSNR"):
        out.add_column(column, justify="right")
    for r in rows:
        out.add_row(
            r["victim"], r["setting"], f"{r['success_rate']:.0%} ({r['jpeg_alone_rate']:.0%})", f"{r['win_rate']:.0%}",
            f"{r['images_per_s']:.2f}", f"{r['cpu_s_per_image']:.2f}", f"{r['mean_steps']:.1f}",
            f"{r['psnr_median']:.1f} dB",
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victims", default="efficientnet-lite0,brisque")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--runs", type=int, default=1, help="timed runs per setting (median)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--ablate-jpeg", action="store_true", help="also a protector trained without the differentiable JPEG")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = [rgb for _, rgb in bench_images(args.images)]
    rows = []
    for name in (n.strip() for n in args.victims.split(",")):
        rows += compare(name, args, images)
        out = RESULTS / f"amortised-{name}.json"
        out.write_text(json.dumps([r for r in rows if r["victim"] == name], indent=2))
        print(f"rows: {out}")
    Console().print(table(rows))


if __name__ == "__main__":
    main()
