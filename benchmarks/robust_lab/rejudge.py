"""Judge protected PNGs written by ``run.py --save-dir`` on a panel again (no attack), and merge
the steps/seconds that run.py printed per image; prints the same summary as run.py.

    .venv/bin/python -m benchmarks.robust_lab.rejudge --victim brisque --panel medium \
        --dir PNG_DIR --log RUN_LOG --out results.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from camo_engine.victims.efficientnet import load_efficientnet_lite0

from .run import psnr, study_set, summarise
from .views import PANEL_CHANNELS, BrisqueReadings, ClassifierReadings, judge

LINE = re.compile(r"^(\S+)\s+\d+x\d+ steps\s+(\d+)\s+([\d.]+)s")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--victim", choices=("brisque", "classifier"), required=True)
    p.add_argument("--panel", default="medium", choices=("medium", "high"))
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--log", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    readings = BrisqueReadings() if args.victim == "brisque" else ClassifierReadings(load_efficientnet_lite0().eval())
    logged = {m[1]: (int(m[2]), float(m[3])) for m in map(LINE.match, args.log.read_text().splitlines()) if m}
    channels = PANEL_CHANNELS[args.panel]
    judged = channels + PANEL_CHANNELS["heldout"]
    rows = []
    for name, rgb in study_set():
        png = args.dir / (name.replace("/", "_") + ".png")
        if name not in logged or not png.exists():
            continue
        out = np.asarray(Image.open(png).convert("RGB"))
        steps, seconds = logged[name]
        rows.append({
            "image": name, "steps": steps, "seconds": seconds, "check_seconds": 0.0,
            "psnr": psnr(out, rgb),
        } | judge(args.victim, readings, rgb, out, judged))
    summary = summarise(rows, {c.name for c in channels})
    summary |= {"victim": args.victim, "panel": args.panel, "n": len(rows), "log": str(args.log)}
    with args.out.open("a") as f:
        f.write(json.dumps({"summary": summary, "rows": rows}) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "per_view"}))
    for view, (share, alone) in summary["per_view"].items():
        print(f"  {view:40s} protected {share:5.1%}  alone {alone:5.1%}")


if __name__ == "__main__":
    main()
