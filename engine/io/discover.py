"""Which files a batch reads, and where each protected copy goes.

Rules, in the order they apply:

* A file named on the command line is always a job.  A folder yields every file under it,
  recursively, in sorted order, except:

  - hidden files and folders (name starting with "."), which includes the temporary files
    that :func:`camo_engine.io.write.atomic_write` leaves if killed;
  - metadata sidecars (``.xmp``, ``.aae``, ``.json``) and OS litter (``Thumbs.db``,
    ``desktop.ini``, ``__MACOSX/``, ``@eaDir/``): never photos, and not copied to the output
    either, because they hold the very metadata (often GPS) that the writer strips;
  - symlinked folders (not followed: no cycles, no file processed twice) and special files
    (FIFOs, sockets, devices: opening a FIFO would block the batch).

  Every other file is a job even if it is not an image: the loader reports it as an error,
  so nothing the user gave is skipped in silence.
* A job's ``relative`` path mirrors its place under the input folder (a named file: its name).
  Output names take the output format's extension, so distinct sources can claim one output;
  they are made distinct, deterministically, in three steps:

  1. folders whose files clash with another folder's get the folder's name as a prefix for
     all their files (inputs ``a/`` and ``b/`` both holding ``x.jpg`` -> ``a/x.jpg``,
     ``b/x.jpg``; named files count as coming from their folder); equal folder names get
     ``-2``, ``-3``... in input order;
  2. files that still clash (``photo.jpg`` and ``photo.png``; names equal but for case, which
     collide on macOS and Windows disks) get their extension in the name: ``photo_jpg``,
     ``photo_png``;
  3. any clash left gets ``_2``, ``_3``... in sorted order.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

SIDECAR_SUFFIXES = frozenset({".xmp", ".aae", ".json"})
SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini"})
SYSTEM_FOLDERS = frozenset({"__macosx", "@eadir"})
OUTPUT_SUFFIXES = {"jpeg": ".jpg", "png": ".png"}


@dataclass(frozen=True)
class Job:
    """One file to protect: ``source`` on disk, ``relative`` output path (before extension).

    ``root`` is the input folder it was found in, or None for a file named directly.
    """

    source: Path
    relative: Path
    root: Path | None = None


def discover(inputs: Sequence[Path]) -> list[Job]:
    """Jobs for files and folders, deterministic for the same inputs and files on disk.

    Raises ``FileNotFoundError`` naming the first input that does not exist, and ``OSError``
    (e.g. ``PermissionError``) naming a folder that cannot be listed: a batch must not miss a
    subfolder in silence.
    """
    jobs: list[Job] = []
    seen: set[str] = set()
    for given in map(Path, inputs):
        if not os.path.lexists(given):
            raise FileNotFoundError(errno.ENOENT, "input not found", str(given))
        for job in _walk(given) if given.is_dir() else [Job(given, Path(given.name))]:
            # the same path named twice, or a file inside a named folder (symlinked aliases of
            # one file stay separate jobs: each name gets its output)
            key = os.path.abspath(job.source)
            if key not in seen:
                seen.add(key)
                jobs.append(job)
    return _disambiguate(jobs)


def output_path(job: Job, outdir: Path, fmt: str) -> Path:
    """Where the protected copy of ``job`` goes: mirrored under ``outdir``, new extension."""
    try:
        suffix = OUTPUT_SUFFIXES[fmt]
    except KeyError:
        raise ValueError(
            f"output format must be one of {sorted(OUTPUT_SUFFIXES)}, got {fmt!r}"
        ) from None
    return Path(outdir) / job.relative.with_name(job.relative.stem + suffix)


def refuse_overwrite(jobs: Sequence[Job], outdir: Path, fmt: str) -> None:
    """Raise ``ValueError`` unless the batch can only ever write new files or its own outputs.

    Refused: ``outdir`` being an input folder or inside one (a re-run or ``--resume`` would
    discover the outputs as new inputs), any output path being an input file (compared by
    device and inode, so symlinks, bind mounts and case-insensitive names are caught), and two
    jobs sharing an output path.  An input folder inside ``outdir`` is fine when no output
    lands on an input.
    """
    outdir = Path(outdir)
    roots = {_identity(job.root): job.root for job in jobs if job.root is not None}
    roots.pop(None, None)  # an input folder deleted since discovery
    for folder in [outdir.resolve(), *outdir.resolve().parents]:
        ident = _identity(folder)
        if ident is not None and ident in roots:
            raise ValueError(
                f"output folder {outdir} is inside (or is) the input folder {roots[ident]}: "
                "protected copies would be read back as inputs; choose an output folder outside it"
            )
    sources = {_identity(job.source): job.source for job in jobs}
    sources.pop(None, None)
    claimed: dict[str, Job] = {}
    for job in jobs:
        out = output_path(job, outdir, fmt)
        key = os.path.normcase(os.path.abspath(out)).casefold()
        if key in claimed:
            raise ValueError(
                f"{claimed[key].source} and {job.source} would both be written to {out}"
            )
        claimed[key] = job
        ident = _identity(out)
        if ident is not None and ident in sources:
            raise ValueError(
                f"refusing to overwrite the input file {sources[ident]} with the output for "
                f"{job.source}; choose another output folder"
            )


def _identity(path: Path | None) -> tuple[int, int] | None:
    """(device, inode) of an existing path, following symlinks; None if it does not exist."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _walk(root: Path) -> list[Job]:
    jobs = []
    # followlinks=False: symlinked folders are not entered; onerror: unreadable folders raise
    for folder, dirs, files in os.walk(root, onerror=_raise):
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and d.casefold() not in SYSTEM_FOLDERS
        )
        for name in sorted(files):
            path = Path(folder, name)
            if _skipped(path):
                continue
            jobs.append(Job(path, path.relative_to(root), root))
    return sorted(jobs, key=lambda j: j.relative.parts)


def _skipped(path: Path) -> bool:
    name = path.name
    if name.startswith("."):  # also atomic_write's temporary files, which are hidden
        return True
    if path.suffix.lower() in SIDECAR_SUFFIXES or name.casefold() in SYSTEM_FILES:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False  # a broken symlink stays a job: the loader reports it as missing
    return not stat.S_ISREG(mode)


def _raise(error: OSError) -> None:
    raise error


def _origin(job: Job) -> str:
    """The folder a job came from: its input folder, or a named file's folder."""
    return os.path.abspath(job.root if job.root is not None else job.source.parent)


def _labels(origins: list[str]) -> dict[str, str]:
    """A distinct name per origin folder, in order of appearance: its name, then -2, -3..."""
    labels: dict[str, str] = {}
    for origin in origins:
        if origin not in labels:
            base = Path(origin).resolve().name or "root"
            label, n = base, 2
            while label in labels.values():
                label, n = f"{base}-{n}", n + 1
            labels[origin] = label
    return labels


def _key(relative: Path) -> str:
    """Outputs differ only by extension; case-insensitive disks ignore case too."""
    return relative.with_name(relative.stem).as_posix().casefold()


def _clashes(jobs: list[Job]) -> list[list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, job in enumerate(jobs):
        groups[_key(job.relative)].append(i)
    return [g for g in groups.values() if len(g) > 1]


def _disambiguate(jobs: list[Job]) -> list[Job]:
    origin = [_origin(job) for job in jobs]
    labels = _labels(origin)
    # 1. folders whose files clash with another folder's get their name as a prefix
    prefixed = {origin[i] for g in _clashes(jobs) if len({origin[i] for i in g}) > 1 for i in g}
    jobs = [
        replace(j, relative=Path(labels[o], j.relative)) if o in prefixed else j
        for j, o in zip(jobs, origin, strict=True)
    ]
    # 2. the extension goes into the name of files that still clash
    for group in _clashes(jobs):
        for i in group:
            rel = jobs[i].relative
            if rel.suffix:
                jobs[i] = replace(
                    jobs[i],
                    relative=rel.with_name(f"{rel.stem}_{rel.suffix[1:].lower()}{rel.suffix}"),
                )
    # 3. counters for anything left, first in sorted order keeps its name
    used = {_key(j.relative) for j in jobs}
    for group in _clashes(jobs):
        group.sort(key=lambda i: jobs[i].relative.as_posix())
        for i in group[1:]:
            rel, n = jobs[i].relative, 2
            while _key(candidate := rel.with_name(f"{rel.stem}_{n}{rel.suffix}")) in used:
                n += 1
            used.add(_key(candidate))
            jobs[i] = replace(jobs[i], relative=candidate)
    return jobs
