"""Protect files on Ray workers with Ray Data: the same output bytes and report as ``protect``.

``read_binary_files`` -> ``map_batches`` with a stateful protector class on an actor pool (the
models load once per actor) -> one row per file: its path, the output file's bytes and its report
row.  The driver writes the files and the report exactly as a local run does
(:func:`camo_engine.pipeline.write_outcomes`: atomic writes, ``--resume``, the summary).
Decoding, the attack (:func:`camo_engine.resilient.protect_each`) and encoding are the local
run's own code, so the same photos, options and seed give the same bytes and verdicts.

Needs the ``ray`` extra (``pip install 'camo-engine[ray]'``).  On a cluster the inputs must be
readable by the workers (a shared file system, or object storage paths for the library
function); the outputs are written where the driver runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .io import strict_json
from .io.discover import Job
from .io.load import ImageLoadError, LoadedImage, load_bytes, refuse_raw
from .io.report import Summary
from .io.write import pixels_to_protect
from .pipeline import Emit, OutputOptions, encode_result, error_row, write_outcomes
from .protector import Protector
from .resilient import protect_each

if TYPE_CHECKING:
    import ray.data

# Columns of the dataset protect_dataset returns.
COLUMNS = ("path", "data", "status", "report")


class ProtectBatch:
    """The stateful map_batches class: builds its :class:`Protector` once, then protects each
    batch of ``{"path", "bytes"}`` rows into ``{"path", "data", "status", "report"}`` rows
    (``data`` empty for an error; ``report`` the report row as JSON)."""

    def __init__(self, protector_options: dict[str, Any], options: OutputOptions, threads: int) -> None:
        # Ray starts a worker with one thread per CPU it was given; the float rounding of the
        # attack's gradients depends on the thread count, so the local run's count is set.
        torch.set_num_threads(threads)
        self.protector = Protector(**protector_options)
        self.options = options

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        victim = self.protector.victim.name
        out: dict[str, list] = {column: [] for column in COLUMNS}

        def add(path: str, data: bytes | None, row: dict[str, Any]) -> None:
            out["path"].append(path)
            out["data"].append(data or b"")
            out["status"].append(row["status"])
            out["report"].append(strict_json.dumps(row))

        def photos() -> Iterator[tuple[tuple[str, LoadedImage], np.ndarray]]:
            for path, blob in zip(batch["path"], batch["bytes"]):
                try:
                    refuse_raw(Path(path))
                    loaded = load_bytes(bytes(blob), self.options.max_pixels, str(path))
                    rgb = pixels_to_protect(loaded, self.options.fmt)
                except ImageLoadError as exc:
                    add(path, None, error_row(path, victim, exc.reason))
                    continue
                except Exception as exc:  # noqa: BLE001 - a source that raised is finished
                    add(path, None, error_row(path, victim, f"cannot read: {type(exc).__name__}: {exc}"))
                    continue
                yield (path, loaded), rgb

        quality = self.protector.config.jpeg_quality
        for (path, loaded), outcome in protect_each(self.protector, photos()):
            if isinstance(outcome, Exception):
                add(path, None, error_row(path, victim, f"protecting failed: {type(outcome).__name__}: {outcome}"))
            else:
                add(path, *encode_result(path, loaded, outcome, victim, quality, self.options))
        return out


def protect_dataset(
    ds: ray.data.Dataset,
    *,
    options: OutputOptions = OutputOptions(),
    actors: int = 1,
    threads: int = 1,
    **protector_options: Any,
) -> ray.data.Dataset:
    """Protect the photos of ``ds`` (``read_binary_files(..., include_paths=True)``: columns
    ``path`` and ``bytes``) on up to ``actors`` Ray actors, each with its own
    ``Protector(**protector_options)`` and ``threads`` torch threads.

    Returns a dataset of ``path``, ``data`` (the output file's bytes; empty for an error),
    ``status`` (``ok`` or ``error``) and ``report`` (the report row as JSON, ``output`` empty).

    Example:
        >>> ds = ray.data.read_binary_files("photos/", include_paths=True)
        >>> out = protect_dataset(ds, victim="efficientnet-lite0", actors=2)
        >>> out.filter(lambda row: row["status"] == "error").count()
    """
    import ray.data

    config = protector_options.get("config")
    return ds.map_batches(
        ProtectBatch,
        fn_constructor_args=(protector_options, options, threads),
        batch_size=config.batch_size if config is not None else 8,
        batch_format="numpy",
        # From one actor up: a pool that must start whole waits for CPUs that the read tasks
        # hold while they wait for the pool to take their blocks (it hung on 2 CPUs).
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
        # One logical CPU per actor whatever its threads: an actor that needs every CPU of a
        # small machine waits forever for those the read tasks hold.  protect_files_ray starts
        # CPUs // threads actors, so the threads still add up to the CPUs.
        num_cpus=1,
    )


def protect_files_ray(
    jobs: Sequence[Job],
    outdir: Path,
    options: OutputOptions,
    protector_options: dict[str, Any],
    address: str = "local",
    on_done: Callable[[dict[str, Any]], None] = lambda row: None,
) -> Summary:
    """``protect_files`` on Ray: ``address`` ``local`` starts a Ray instance in this process
    (all of this machine's CPUs), anything else joins that cluster (``auto``, ``HOST:PORT``,
    ``ray://HOST:PORT``).  One actor per CPU of the cluster; a Ray started here is shut down."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(f"--ray needs the ray extra (pip install 'camo-engine[ray]'): {exc}") from exc

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=None if address == "local" else address, include_dashboard=False)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        # Each actor with this process's thread count: the same bytes as a local run on the same
        # kind of CPU (docs/serve.md, "Ray").
        threads = torch.get_num_threads()
        actors = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)

        def produce(todo: Sequence[Job], emit: Emit) -> None:
            if not todo:
                return
            by_path = {os.path.abspath(job.source): job for job in todo}
            ds = ray.data.read_binary_files([str(job.source) for job in todo], include_paths=True)
            protected = protect_dataset(
                ds, options=options, actors=min(actors, len(todo)), threads=threads, **protector_options
            )
            for row in protected.iter_rows():
                job = by_path[os.path.abspath(row["path"])]
                report = strict_json.loads(row["report"]) | {"input": str(job.source)}
                emit(job, row["data"] if row["status"] == "ok" else None, report)

        return write_outcomes(jobs, outdir, options, produce, on_done)
    finally:
        if started_here:
            ray.shutdown()
