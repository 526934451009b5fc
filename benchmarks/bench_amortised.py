"""The amortised protector against plain I-FGSM: success after JPEG 90 and images/s, side by side.

    python benchmarks/bench_amortised.py [--victims efficientnet-lite0,brisque] [--images 32] [--out DIR]

Workload: the bench's default images (the sample photos, then deterministic crops of them, short
side 384).  For each victim the protector is loaded from ``results/protectors/VICTIM.pt`` (or
``--protectors DIR``), or trained with the settings below and saved there when missing (or with
``--retrain``).  Rows go to ``results/amortised-VICTIM.json`` (or ``--out DIR``), standard JSON:
a value that was not measured is ``null``, named under ``non_finite``.  With
``--ablate-jpeg`` a second protector trained without the differentiable JPEG is measured too.

Every setting runs through ``camo_engine.Protector``, the path of ``camo-engine protect``:
``--protector FILE --finish-steps N`` for the protector rows (its output judged after JPEG,
I-FGSM only on the photos it left unprotected), ``--steps N`` for plain I-FGSM.  The
protector's forward pass alone (no verdicts) is timed too, to show where its time goes.

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
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from camo_engine.amortised import (
    AmortisedNet,
    amortised_starts,
    load_amortised,
    save_amortised,
)
from camo_engine.amortised.train import TrainConfig, train_protector
from camo_engine.attack import AttackConfig
from camo_engine.backends import TorchBackend
from camo_engine.benchmarks.harness import (
    CountingBackend,
    Outcome,
    bench_images,
    outcome_row,
)
from camo_engine.io import jpeg, strict_json
from camo_engine.io.load import load_image
from camo_engine.protector import Protector
from camo_engine.samples import sample_paths
from camo_engine.victims import Victim, load_victim
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "results"
PROTECTORS = RESULTS / "protectors"
# Budgets that fit minutes on 2 (shared) CPU cores (the committed protectors: 909 s and 1205 s
# of training under load); crops at the victim's input short side.
TRAINING = {
    "efficientnet-lite0": TrainConfig(steps=80, batch_size=4, crop=224, lr=1e-2),
    "brisque": TrainConfig(steps=40, batch_size=4, crop=384, lr=1e-2),
}
FINISH_STEPS = (0, 10)
PLAIN_STEPS = (AttackConfig().steps,)


def protector(name: str, victim: Victim, config: TrainConfig, path: Path, retrain: bool) -> AmortisedNet:
    """The saved protector if it was trained with ``config``, else a freshly trained one."""
    if path.is_file() and not retrain:
        model, meta = load_amortised(path)
        # Rebuilt through TrainConfig, so fields added later compare at their defaults.
        if TrainConfig(**meta.get("training", {})) == config:
            return model
        print(f"{path.name}: trained with other settings, retraining")
    photos = [jpeg.to_float(load_image(p).rgb) for p in sample_paths()]
    start = time.perf_counter()
    model = train_protector(victim, photos, config, on_step=log_losses)
    seconds = time.perf_counter() - start
    meta = {"victim": name, "training": dataclasses.asdict(config), "train_seconds": round(seconds)}
    save_amortised(model, path, meta)
    print(f"trained {path.name} in {seconds:.0f} s")
    return model


def log_losses(step: int, losses: dict[str, float]) -> None:
    print(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in losses.items()), flush=True)


def tool(victim: Victim, backend: CountingBackend, config: AttackConfig, net: AmortisedNet | None, finish: int):
    """``camo_engine.Protector`` as ``protect`` runs it: with ``--protector``/``--finish-steps``
    when there is a net, else plain I-FGSM with ``config.steps``."""
    if net is None:
        protector = Protector(victim, config=config, backend=backend)
    else:
        protector = Protector(victim, config=config, backend=backend, amortised=net, finish_steps=finish)

    def run(images: list[np.ndarray]) -> tuple[Outcome, list[str]]:
        backend.reset()
        results = protector.protect(images)
        outcome = Outcome(
            adversarial=[r.rgb for r in results],
            rows=backend.rows,
            batch_steps=backend.steps,
            steps=[r.steps for r in results],
            protected=[r.protected for r in results],
            alone=[r.already or r.alone for r in results],
        )
        return outcome, [r.method for r in results]

    return run


def forward_seconds(net: AmortisedNet, images: list[np.ndarray]) -> tuple[float, float]:
    """Wall and CPU seconds per image of the protector's forward pass alone (no verdicts)."""
    floats = [jpeg.to_float(im) for im in images]
    start, cpu = time.perf_counter(), time.process_time()
    for _ in amortised_starts(net, floats):
        pass
    return (time.perf_counter() - start) / len(images), (time.process_time() - cpu) / len(images)


def compare(name: str, args: argparse.Namespace, images: list[np.ndarray]) -> list[dict]:
    """Rows for one victim: protector (+ finishing steps), ablation, plain I-FGSM."""
    victim = load_victim(name)
    backend = CountingBackend(TorchBackend(victim))
    config = TRAINING[name]
    nets = {"protector": protector(name, victim, config, args.protectors / f"{name}.pt", args.retrain)}
    if args.ablate_jpeg:
        plain = dataclasses.replace(config, jpeg_quality=None)
        nets["protector, no diff JPEG"] = protector(name, victim, plain, args.protectors / f"{name}-nojpeg.pt", args.retrain)
    settings = [(f"{label} + {n} steps", net, n) for label, net in nets.items() for n in FINISH_STEPS]
    settings += [(f"I-FGSM {n} steps", None, n) for n in PLAIN_STEPS]
    base = AttackConfig(batch_size=args.batch_size)
    tools = {
        label: tool(victim, backend, base if net else dataclasses.replace(base, steps=n), net, n)
        for label, net, n in settings
    }
    next(iter(tools.values()))(images[:2])  # warm-up: thread pool, allocator, first calls
    forward = {label: forward_seconds(net, images) for label, net in nets.items()}
    walls: dict[str, list[float]] = {label: [] for label in tools}
    cpus: dict[str, list[float]] = {label: [] for label in tools}
    outcomes: dict[str, tuple[Outcome, list[str]]] = {}
    for _ in range(args.runs):
        for label, run in tools.items():
            start, cpu = time.perf_counter(), time.process_time()
            outcomes[label] = run(images)
            walls[label].append(time.perf_counter() - start)
            cpus[label].append(time.process_time() - cpu)
            print(f"{name} | {label}: {walls[label][-1]:.1f} s, {cpus[label][-1]:.1f} CPU s", flush=True)
    rows = []
    for label, net, _ in settings:
        outcome, methods = outcomes[label]
        net_label = next((k for k, v in nets.items() if v is net), None)
        rows.append({
            "victim": name,
            "setting": label,
            **outcome_row(images, walls[label], outcome, math.nan),
            "cpu_s_per_image": statistics.median(cpus[label]) / len(images),
            "win_rate": statistics.fmean(p and not a for p, a in zip(outcome.protected, outcome.alone)),
            # Protected by the protector's output as is (0 finishing steps): its own success.
            "protector_alone_rate": statistics.fmean(
                p and m == "protector" for p, m in zip(outcome.protected, methods)
            ),
            "forward_s_per_image": forward[net_label][0] if net_label else math.nan,
            "forward_cpu_s_per_image": forward[net_label][1] if net_label else math.nan,
        })
    return rows


def table(rows: list[dict]) -> Table:
    out = Table(title="amortised protector vs I-FGSM (eps 8/255, alpha 1/255), verdicts after JPEG 90")
    for column in ("victim", "setting", "success (JPEG alone)", "wins", "by protector alone", "images/s", "CPU s/image", "mean steps", "PSNR"):
        out.add_column(column, justify="right")
    for r in rows:
        out.add_row(
            r["victim"], r["setting"], f"{r['success_rate']:.0%} ({r['alone_rate']:.0%})", f"{r['win_rate']:.0%}",
            f"{r['protector_alone_rate']:.0%}", f"{r['images_per_s']:.2f}", f"{r['cpu_s_per_image']:.2f}",
            f"{r['mean_steps']:.1f}", f"{r['psnr_median']:.1f} dB",
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
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for amortised-VICTIM.json")
    parser.add_argument("--protectors", type=Path, default=PROTECTORS, help="folder of the protectors (read, and written when trained)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = [rgb for _, rgb in bench_images(args.images)]
    rows = []
    for name in (n.strip() for n in args.victims.split(",")):
        rows += compare(name, args, images)
        args.out.mkdir(parents=True, exist_ok=True)
        out = args.out / f"amortised-{name}.json"
        out.write_text(strict_json.dumps({"victim": name, "rows": [r for r in rows if r["victim"] == name]}, indent=2) + "\n")
        print(f"rows: {out}")
    Console().print(table(rows))


if __name__ == "__main__":
    main()
