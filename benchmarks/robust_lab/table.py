"""Markdown tables from run.py's JSONL: one row per run, and per-view shares of chosen runs.

    .venv/bin/python -m benchmarks.robust_lab.table RESULTS.jsonl [--views N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument("--views", type=int, nargs="*", default=[], help="run numbers to detail")
    args = p.parse_args()
    runs = [json.loads(line) for f in args.files for line in f.read_text().splitlines() if line]
    print(
        "| # | victim | panel | n | views/step | jitter | step | eps | alpha | margin | blur | check k "
        "| all-panel | worst view (share) | all held-out | median PSNR | mean steps | s/photo | check s share |"
    )
    print("|" + "---|" * 19)
    for i, run in enumerate(runs):
        s = {k: "-" for k in ("views", "eps", "alpha", "margin", "blur", "check_every")} | run["summary"]
        worst = s["worst_view"]
        print(
            f"| {i} | {s['victim']} | {s['panel']} | {s['n']} | {s['views'] if s['views'] != 0 else 'all'} | "
            f"{s.get('jitter', 0)} | {s.get('step', 'sign')} | {s['eps']} | {s['alpha']} | "
            f"{s['margin']} | {s['blur']} | {s['check_every']} | {s['all_panel_share']:.0%} | "
            f"{worst} ({s['per_view'][worst][0]:.0%}) | {s['all_heldout_share']:.0%} | "
            f"{s['median_psnr']:.1f} | {s['mean_steps']:.1f} | {s['total_seconds'] / s['n']:.1f} | "
            f"{s['check_seconds'] / max(s['total_seconds'], 1e-9):.0%} |"
        )
    for i in args.views:
        s = runs[i]["summary"]
        print(f"\nRun {i}: per view, protected share / share the channel changes alone\n")
        print("| view | protected | alone |\n|---|---|---|")
        for view, (share, alone) in s["per_view"].items():
            print(f"| {view} | {share:.0%} | {alone:.0%} |")


if __name__ == "__main__":
    main()
