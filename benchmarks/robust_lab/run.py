"""Run one setting of the EOT study on the study set and print/save per-view shares.

    .venv/bin/python -m benchmarks.robust_lab.run --victim brisque --panel medium \
        --views 4 --margin 10 --eps 8 --steps 40 --check-every 1 --out results.jsonl

Study set: the 9 bundled photos, 4 variants each (36 images, long side <= 768, sides multiples
of 32 so that the 0.5x channel and the codecs' 16-px blocks line up): the photo capped to long
side 768; its central 75% crop; the photo at long side 320; a 256x256 crop at native scale.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from camo_engine.samples import sample_paths
from camo_engine.victims.brisque import Brisque
from camo_engine.victims.efficientnet import load_efficientnet_lite0

from .eot import EOTConfig, attack
from .views import (
    PANEL_CHANNELS,
    BrisqueReadings,
    ClassifierReadings,
    alone_changes,
    brisque_protected,
    classifier_protected,
    read_panel,
)


def _fit32(im: Image.Image) -> np.ndarray:
    w, h = im.size
    return np.asarray(im.crop((0, 0, w - w % 32, h - h % 32)).convert("RGB"))


def _long_side(im: Image.Image, side: int) -> Image.Image:
    w, h = im.size
    s = min(1.0, side / max(w, h))
    return im.resize((round(w * s), round(h * s)), Image.Resampling.LANCZOS) if s < 1 else im


def study_set() -> list[tuple[str, np.ndarray]]:
    out = []
    for path in sample_paths():
        with Image.open(path) as f:
            im = f.convert("RGB")
        w, h = im.size
        name = path.stem
        out.append((f"{name}/full", _fit32(_long_side(im, 768))))
        cw, ch = int(w * 0.75), int(h * 0.75)
        crop = im.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch))
        out.append((f"{name}/crop75", _fit32(_long_side(crop, 768))))
        out.append((f"{name}/ls320", _fit32(_long_side(im, 320))))
        left, top = (w - 256) // 3, (h - 256) // 3
        out.append((f"{name}/crop256", _fit32(im.crop((left, top, left + 256, top + 256)))))
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255**2 / mse)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--victim", choices=("brisque", "classifier"), required=True)
    p.add_argument("--panel", default="medium", choices=("medium", "high"))
    p.add_argument("--views", type=int, default=4, help="views per step, 0 = all")
    p.add_argument("--margin", type=float, default=10.0)
    p.add_argument("--stop-margin", type=float, default=0.0)
    p.add_argument("--eps", type=float, default=8.0, help="in /255")
    p.add_argument("--alpha", type=float, default=1.0, help="in /255")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--check-every", type=int, default=1)
    p.add_argument("--blur", type=float, default=1.0)
    p.add_argument("--step", choices=("sign", "rms"), default="sign")
    p.add_argument("--jitter", type=int, default=0, help="random off-panel channels for EOT")
    p.add_argument("--limit", type=int, default=0, help="first N images only")
    p.add_argument("--every", type=int, default=1, help="every Nth image of the set")
    p.add_argument("--budget", type=float, default=0, help="stop after this many seconds")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tag", default="")
    p.add_argument("--save-dir", type=Path, help="write each protected photo here as PNG")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)

    if args.victim == "brisque":
        model = Brisque().eval()
        readings = BrisqueReadings()
    else:
        model = load_efficientnet_lite0().eval()
        readings = ClassifierReadings(model)
    channels = PANEL_CHANNELS[args.panel]
    judged = channels + PANEL_CHANNELS["heldout"]
    cfg = EOTConfig(
        eps=args.eps / 255,
        alpha=args.alpha / 255,
        steps=args.steps,
        views_per_step=args.views,
        margin=args.margin,
        check_every=args.check_every,
        stop_margin=args.stop_margin,
        blur_sigma=args.blur,
        step=args.step,
        jitter=args.jitter,
    )
    images = study_set()[:: args.every]
    if args.limit:
        images = images[: args.limit]
    t0 = time.perf_counter()
    rows = []
    for name, rgb in images:
        if args.budget and time.perf_counter() - t0 > args.budget:
            break
        orig = read_panel(readings, rgb, judged)
        alone = alone_changes("brisque" if args.victim == "brisque" else "classifier", orig)
        start_ok = (
            brisque_protected({k: v for k, v in orig.items() if k.split("/")[0] in {c.name for c in channels}}, margin=cfg.stop_margin)
            if args.victim == "brisque"
            else {"x": False}
        )
        panel_orig = {k: v for k, v in orig.items() if k.split("/")[0] in {c.name for c in channels}}
        if all(start_ok.values()):
            out_rgb, steps, secs, check_s, stopped = rgb, 0, 0.0, 0.0, True
        else:
            res = attack(args.victim, model, readings, rgb, channels, cfg, panel_orig)
            out_rgb, steps, secs, check_s, stopped = (
                res.rgb, res.steps, res.seconds, res.check_seconds, res.stopped
            )
        adv = read_panel(readings, out_rgb, judged)
        if args.save_dir:
            args.save_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(out_rgb).save(args.save_dir / (name.replace("/", "_") + ".png"))
        ok = (
            brisque_protected(adv)
            if args.victim == "brisque"
            else classifier_protected(adv, orig)
        )
        row = {
            "image": name,
            "size": list(rgb.shape[:2]),
            "steps": steps,
            "seconds": secs,
            "check_seconds": check_s,
            "stopped": stopped,
            "psnr": psnr(out_rgb, rgb),
            "linf": int(np.abs(out_rgb.astype(int) - rgb.astype(int)).max()),
            "protected": ok,
            "alone": alone,
            "orig": orig,
            "adv": adv,
        }
        rows.append(row)
        print(
            f"{name:28s} {rgb.shape[1]}x{rgb.shape[0]} steps {steps:3d} {secs:6.1f}s "
            f"psnr {row['psnr']:.1f} panel {sum(ok[k] for k in panel_orig)}/{len(panel_orig)} "
            f"heldout {sum(v for k, v in ok.items() if k not in panel_orig)}/{len(ok) - len(panel_orig)}",
            flush=True,
        )
    summary = summarise(rows, {c.name for c in channels})
    summary.update({k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()} | {"n": len(rows)})
    with args.out.open("a") as f:
        f.write(json.dumps({"summary": summary, "rows": rows}) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "per_view"}, indent=None))
    for view, (share, alone_share) in summary["per_view"].items():
        print(f"  {view:40s} protected {share:5.1%}  alone {alone_share:5.1%}")


def summarise(rows: list[dict], panel: set[str]) -> dict:
    views = list(rows[0]["protected"])
    per_view = {
        v: (
            sum(r["protected"][v] for r in rows) / len(rows),
            sum(r["alone"][v] for r in rows) / len(rows),
        )
        for v in views
    }
    panel_views = [v for v in views if v.split("/")[0] in panel]
    return {
        "all_panel_share": sum(all(r["protected"][v] for v in panel_views) for r in rows) / len(rows),
        "min_view_share": min(per_view[v][0] for v in panel_views),
        "worst_view": min(panel_views, key=lambda v: per_view[v][0]),
        "all_heldout_share": sum(
            all(r["protected"][v] for v in views if v not in panel_views) for r in rows
        ) / len(rows),
        "median_psnr": statistics.median(r["psnr"] for r in rows),
        "mean_steps": statistics.mean(r["steps"] for r in rows),
        "median_seconds": statistics.median(r["seconds"] for r in rows),
        "total_seconds": sum(r["seconds"] for r in rows),
        "check_seconds": sum(r["check_seconds"] for r in rows),
        "per_view": per_view,
    }


if __name__ == "__main__":
    main(sys.argv[1:])
