"""Early-stop cadence at medium, side by side: one Protector run over the strength bench's 32
images at 256 px per setting.  Usage (each line of cadence.txt):

    .venv/bin/python benchmarks/results/cadence_8th/cadence.py brisque check_every=1 steps=60
"""
import sys, statistics, time, torch
torch.set_num_threads(2)
from camo_engine.attack import strength_config
from camo_engine.protector import Protector
from camo_engine.benchmarks.harness import bench_images
wl = bench_images(32, 256)
VICTIM = sys.argv[1]
over = dict(a.split("=") for a in sys.argv[2:])
over = {k: (float(v) if "." in v else int(v)) for k, v in over.items()}
cfg = strength_config("medium", **over)
p = Protector(VICTIM, strength="medium", config=cfg)
t = time.perf_counter(); rs = p.protect([rgb for _, rgb in wl]); s = time.perf_counter() - t
print(VICTIM, over, "every view", sum(r.protected for r in rs) / len(rs), "psnr", statistics.median(r.fidelity["psnr"] for r in rs),
      "steps", statistics.median(r.steps for r in rs), "s", round(s), [n for (n, _), r in zip(wl, rs) if not r.protected])
