"""Load and soak of ``camo-engine serve`` on loopback, against ``protect`` in one process.

    python benchmarks/bench_service.py [--victim brisque] [--strength medium] [--steps 10]
        [--requests 72] [--clients 1,4,8,16] [--soak 500] [--out benchmarks/results]

Everything runs on 127.0.0.1 and is bounded: ``--requests`` per concurrency level,
``--soak`` requests in a row, ``--time-limit`` seconds per phase.  In order:

1. The service (``python -m camo_engine serve`` in a child process, models loaded and warmed up
   before the clock starts) with 1, 4, 8, 16 concurrent clients sending the bundled photos:
   throughput, p50/p95/p99 latency, errors, rows per gradient pass (from ``/metrics``), the
   server's CPU seconds per photo and RSS.  Right before each level, ``protect``'s own code
   (``protect_files``, in a child process, after a warm-up photo) on the same number of the
   same photos: the ratio is taken side by side, since the machine is shared and its load
   drifts (the load average is recorded with each level).
2. Soak: ``--soak`` requests in a row from one client at ``--soak-strength`` (the bundled
   photos downscaled to 320 px on the long side, to keep it minutes); RSS every 50 requests.
3. Mixed: empty body, text, truncated JPEG, a decompression bomb and a bad option between good
   requests from 4 clients: each bad one must get its 4xx, each good one 200.

Needs the ``test`` extra (httpx for the clients, the ``serve`` extra for the server).
``--strength`` and ``--steps`` set the attack (the same for the service and for ``protect``;
both attack in batches of 8).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image

from camo_engine.io import strict_json
from camo_engine.samples import sample_paths

HOST = "127.0.0.1"


class Server:
    """``camo-engine serve`` in a child process on a free loopback port, its RSS sampled."""

    def __init__(self, victim: str, strength: str, steps: int, log: Path) -> None:
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            self.port = probe.getsockname()[1]
        self.base = f"http://{HOST}:{self.port}"
        command = [
            sys.executable, "-m", "camo_engine", "serve", "--host", HOST, "--port", str(self.port),
            "--victim", victim, "--set", f"steps={steps}", "--set", f"strength={strength}", "--max-queue", "64",
            "--log-level", "warning",
        ]
        self._log = log.open("w")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        self.rss: list[tuple[float, str, int]] = []  # (time, phase, bytes)
        self.phase = "start"
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def start(self, within: float = 600) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=5).status_code == 200:
                    self._sampler.start()
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}")
            time.sleep(0.2)
        raise TimeoutError("the server was not ready in time")

    def _sample(self) -> None:
        process = psutil.Process(self.process.pid)
        while not self._stop.wait(0.25):
            self.rss.append((time.time(), self.phase, process.memory_info().rss))

    def metrics(self) -> str:
        return httpx.get(f"{self.base}/metrics", timeout=30).text

    def stop(self) -> None:
        self._stop.set()
        self.process.terminate()
        self.process.wait(120)
        self._log.close()


def histogram(text: str, name: str) -> tuple[dict[float, float], float, float]:
    """A Prometheus histogram's cumulative bucket counts by upper bound, its count and sum."""
    buckets = {
        float(m.group(1)): float(m.group(2))
        for m in re.finditer(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', text, re.M)
    }
    count, total = (
        float(m.group(1)) if (m := re.search(rf"^{name}_{part} (\S+)$", text, re.M)) else 0.0
        for part in ("count", "sum")
    )
    return buckets, count, total


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_clients(base: str, bodies: list[bytes], clients: int, total: int, time_limit: float,
                params: dict[str, str] | None = None) -> dict:
    """``total`` requests from ``clients`` concurrent clients, photos in turn."""
    counter = iter(range(total))
    lock = threading.Lock()
    results: list[tuple[int, float, dict]] = []
    stop_at = time.monotonic() + time_limit

    def client() -> None:
        with httpx.Client(base_url=base, timeout=600) as http:
            while time.monotonic() < stop_at:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                started = time.perf_counter()
                answer = http.post("/v1/protect", content=bodies[n % len(bodies)], params=params or {})
                headers = {k: answer.headers.get(k, "") for k in ("x-camo-protected", "x-camo-steps")}
                with lock:
                    results.append((answer.status_code, time.perf_counter() - started, headers))

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    wall = time.perf_counter() - started
    ok = [r for r in results if r[0] == 200]
    latencies = [r[1] for r in ok]
    return {
        "clients": clients,
        "requests": len(results),
        "errors": len(results) - len(ok),
        "seconds": round(wall, 2),
        "photos_per_s": round(len(ok) / wall, 3),
        "p50_s": round(percentile(latencies, 50), 3),
        "p95_s": round(percentile(latencies, 95), 3),
        "p99_s": round(percentile(latencies, 99), 3),
        "protected_share": round(sum(r[2]["x-camo-protected"] == "true" for r in ok) / max(1, len(ok)), 3),
        "mean_steps": round(statistics.mean(int(r[2]["x-camo-steps"]) for r in ok), 2) if ok else None,
    }


def protect_baseline(photos: list[Path], count: int, victim: str, strength: str, steps: int, work: Path) -> dict:
    """``protect`` (``protect_files``, the command's own code) on ``count`` copies of the photos
    in a child process, timed there after one warm-up photo: wall and CPU seconds."""
    inputs = work / "in"
    shutil.rmtree(work, ignore_errors=True)
    inputs.mkdir(parents=True)
    for i in range(count):
        source = photos[i % len(photos)]
        shutil.copy(source, inputs / f"{i:03d}-{source.name}")
    command = [sys.executable, __file__, "--baseline-child", str(inputs), "--victim", victim,
               "--strength", strength, "--steps", str(steps)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def baseline_child(inputs: Path, victim: str, strength: str, steps: int) -> None:
    from camo_engine.attack import strength_config
    from camo_engine.io.discover import discover
    from camo_engine.pipeline import protect_files
    from camo_engine.protector import Protector

    protector = Protector(victim, config=strength_config(strength, steps=steps), strength=strength)
    jobs = discover([inputs])
    with tempfile.TemporaryDirectory() as out:
        protect_files(protector, jobs[:1], Path(out) / "warm-up")
        wall, cpu = time.perf_counter(), time.process_time()
        summary = protect_files(protector, jobs, Path(out) / "run")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({"photos": summary.processed, "seconds": round(wall, 2), "cpu_s": round(cpu, 2),
                      "photos_per_s": round(summary.processed / wall, 3)}))


def small_bodies(photos: list[Path], long_side: int = 320) -> list[bytes]:
    """The photos downscaled to ``long_side`` (when larger) and re-encoded as JPEG 92."""
    bodies = []
    for path in photos:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=92)
            bodies.append(buf.getvalue())
    return bodies


def small_photos(photos: list[Path], long_side: int, folder: Path) -> list[Path]:
    """:func:`small_bodies` as files in ``folder`` (for ``protect``'s side of the ratio)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path, body in zip(photos, small_bodies(photos, long_side)):
        out.append(folder / f"{path.stem}.jpg")
        out[-1].write_bytes(body)
    return out


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring ``width`` x ``height`` grey pixels, in under 100 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def bad_requests(good: bytes) -> list[tuple[str, bytes, dict[str, str], int]]:
    """(name, body, query, expected status) for the mixed run."""
    return [
        ("empty body", b"", {}, 422),
        ("text", b"this is not a photo\n" * 10, {}, 415),
        ("truncated JPEG", good[: len(good) // 2], {}, 422),
        ("decompression bomb (30000x30000 PNG)", bomb_png(30000, 30000), {}, 422),
        ("bad option", good, {"eps": "lots"}, 422),
    ]


def mixed_run(base: str, goods: list[bytes]) -> dict:
    jpeg = next(b for b in goods if b[:2] == b"\xff\xd8")
    cases = [("good", body, {}, 200) for body in goods]
    for i, bad in enumerate(bad_requests(jpeg)):
        cases.insert(2 * i + 1, bad)

    def send(case):
        name, body, params, expected = case
        answer = httpx.post(f"{base}/v1/protect", content=body, params=params, timeout=600)
        reason = answer.json().get("error", "") if answer.status_code != 200 else ""
        return {"request": name, "expected": expected, "status": answer.status_code, "reason": reason}

    with ThreadPoolExecutor(4) as pool:
        rows = list(pool.map(send, cases))
    return {"rows": rows, "all_as_expected": all(r["status"] == r["expected"] for r in rows)}


def soak(server: Server, bodies: list[bytes], count: int, time_limit: float, strength: str) -> dict:
    marks = []
    stop_at = time.monotonic() + time_limit
    errors = 0
    process = psutil.Process(server.process.pid)
    n = -1
    with httpx.Client(base_url=server.base, timeout=600) as http:
        for n in range(count):
            if time.monotonic() > stop_at:
                break
            answer = http.post("/v1/protect", content=bodies[n % len(bodies)], params={"strength": strength})
            errors += answer.status_code != 200
            if (n + 1) % 50 == 0:
                marks.append((n + 1, round(process.memory_info().rss / 2**20, 1)))
    done = n + 1
    after_warmup = [rss for n, rss in marks if n >= 100]
    return {
        "requests": done,
        "errors": errors,
        "rss_mib_every_50": marks,
        "growth_after_100_mib": round(after_warmup[-1] - after_warmup[0], 1) if len(after_warmup) > 1 else None,
    }


def markdown(results: dict) -> str:
    lines = [
        f"victim {results['victim']}, --strength {results['strength']}, --steps {results['steps']}, "
        f"{results['requests']} requests per level, photos at long side {results['long_side'] or 'as bundled'} "
        f"(the {len(results['photos'])} bundled photos in turn), load average {results['load_before']} before / "
        f"{results['load_after']} after (2 cores shared with other work)",
        "",
        "| clients | requests | errors | photos/s | `protect` photos/s just before | ratio | p50 s | p95 s | p99 s "
        "| rows per pass (mean / max) | CPU s per photo (service / protect) | server RSS MiB (max) | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for level in results["levels"]:
        lines.append(
            f"| {level['clients']} | {level['requests']} | {level['errors']} | {level['photos_per_s']:.3f} | "
            f"{level['protect']['photos_per_s']:.3f} | {level['ratio_to_protect']:.2f} | {level['p50_s']:.2f} | "
            f"{level['p95_s']:.2f} | {level['p99_s']:.2f} | {level['rows_per_pass_mean']:.2f} / "
            f"{level['rows_per_pass_max']} | {level['cpu_s_per_photo']:.2f} / {level['protect']['cpu_s_per_photo']:.2f} | "
            f"{level['rss_max_mib']} | {level['load']} |"
        )
    soak_ = results["soak"]
    lines += ["", f"soak (strength {results['soak_strength']}, 320-px photos): {soak_['requests']} requests in a row, "
              f"{soak_['errors']} errors, RSS (MiB) every 50: "
              + ", ".join(f"{n}: {rss}" for n, rss in soak_["rss_mib_every_50"])
              + f"; growth from request 100 to the end: {soak_['growth_after_100_mib']} MiB", ""]
    lines += ["| mixed request | expected | got | reason |", "|---|---|---|---|"]
    for row in results["mixed"]["rows"]:
        lines.append(f"| {row['request']} | {row['expected']} | {row['status']} | {row['reason'][:80]} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--victim", default="brisque")
    parser.add_argument("--strength", default="medium")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--requests", type=int, default=72, help="requests per concurrency level")
    parser.add_argument("--clients", default="1,4,8,16")
    parser.add_argument("--long-side", type=int, help="send the photos downscaled to this long side (JPEG 92)")
    parser.add_argument("--soak", type=int, default=500, help="requests in a row for the soak")
    parser.add_argument("--soak-strength", help="the soak's strength (default: --strength); memory, not robustness, is measured")
    parser.add_argument("--time-limit", type=float, default=1200, help="seconds per phase at most")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--baseline-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_child:
        baseline_child(args.baseline_child, args.victim, args.strength, args.steps)
        return

    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    photos = sample_paths()
    if args.long_side:
        photos = small_photos(photos, args.long_side, work / "photos")
    bodies = [p.read_bytes() for p in photos]
    results: dict = {"victim": args.victim, "strength": args.strength, "soak_strength": args.soak_strength or args.strength,
                     "long_side": args.long_side,
                     "steps": args.steps, "requests": args.requests,
                     "photos": [p.name for p in photos], "load_before": round(os.getloadavg()[0], 2)}
    try:
        server = Server(args.victim, args.strength, args.steps, work / "server.log")
        server.start()
        cpu = psutil.Process(server.process.pid)
        try:
            # Warm-up: the first request of each photo size pays one-off costs (JIT, allocators).
            run_clients(server.base, bodies, 4, len(bodies), args.time_limit)
            results["levels"] = []
            for clients in map(int, args.clients.split(",")):
                # protect right before each level: the machine is shared, its load drifts.
                baseline = protect_baseline(photos, args.requests, args.victim, args.strength, args.steps, work / "baseline")
                server.phase = f"clients={clients}"
                before, cpu_before = histogram(server.metrics(), "camo_pass_rows"), cpu.cpu_times()
                level = run_clients(server.base, bodies, clients, args.requests, args.time_limit)
                after, cpu_after = histogram(server.metrics(), "camo_pass_rows"), cpu.cpu_times()
                passes = after[1] - before[1]
                level["gradient_passes"] = int(passes)
                level["rows_per_pass_mean"] = round((after[2] - before[2]) / passes, 2) if passes else 0
                # The largest pass is at most the first bucket that holds every pass of this level
                # (exact up to 16 rows, where the buckets are every whole number).
                level["rows_per_pass_max"] = next(
                    (int(le) for le in sorted(after[0]) if after[0][le] - before[0].get(le, 0) >= passes), None
                )
                spent = sum(cpu_after[:2]) - sum(cpu_before[:2])
                level["cpu_s_per_photo"] = round(spent / max(1, level["requests"] - level["errors"]), 3)
                level["rss_max_mib"] = round(max((r for _, p, r in server.rss if p == server.phase), default=0) / 2**20, 1)
                level["protect"] = baseline | {"cpu_s_per_photo": round(baseline["cpu_s"] / baseline["photos"], 3)}
                level["ratio_to_protect"] = round(level["photos_per_s"] / baseline["photos_per_s"], 3)
                level["load"] = round(os.getloadavg()[0], 2)
                results["levels"].append(level)
                print(json.dumps(level), flush=True)
            server.phase = "soak"
            results["soak"] = soak(server, small_bodies(photos), args.soak, args.time_limit, args.soak_strength or args.strength)
            print(json.dumps(results["soak"]), flush=True)
            server.phase = "mixed"
            results["mixed"] = mixed_run(server.base, bodies)
        finally:
            server.stop()
        results["load_after"] = round(os.getloadavg()[0], 2)
        results["rss_samples"] = [(round(t, 2), p, r) for t, p, r in server.rss]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_service.json").write_text(strict_json.dumps(results, indent=1))
    table = markdown(results)
    (args.out / "bench_service.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
