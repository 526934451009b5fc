"""Evaluate protected photos against their originals: protection per victim and view,
fidelity and appeal.

A *view* is what a platform does to a shared photo and how a model deployment reads it
(:mod:`camo_engine.threat`).  For each victim and view the reference is what the victim says
of the original through the same view, so a view that by itself changes the verdict on the
original is not counted as the protection's win: that share is reported beside every rate.

The verdict is the attack loop's own, from :mod:`camo_engine.attack.verdict`.
"""

from __future__ import annotations

import csv
import functools
import math
import os
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import Tensor

from ..attack.verdict import PanelJudge
from ..backends import make_backend
from ..io import strict_json
from ..io.load import ImageLoadError, load_image
from ..io.report import read_rows
from ..threat import Panel, View
from ..threat.panels import product, resolve_panel
from ..victims import Victim
from .contact_sheet import amplified_difference, figure, thumbnail, write_contact_sheet
from .fidelity import fidelity

# Victims evaluated when none is named: the quality regressor and the content classifier.
DEFAULT_VICTIMS = ("brisque", "efficientnet-lite0")
CONTACT_ROWS = 4


def scores(victim: Victim, outputs: Tensor, clean: Tensor) -> list[float]:
    """What histograms show: a regressor's score; a classifier's probability of the class
    that was the original's top-1."""
    if victim.kind == "classifier":
        return outputs.float().softmax(1).gather(1, clean.argmax(1, keepdim=True))[:, 0].tolist()
    if outputs.ndim > 1:  # an ensemble has no one score: its members' own rows carry theirs
        return [math.nan] * outputs.shape[0]
    return outputs.float().tolist()


# -- pairing -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    key: str  # relative path without extension
    original: Path
    protected: Path


@dataclass
class Pairing:
    pairs: list[Pair]
    only_original: list[str]  # keys with no protected file
    only_protected: list[str]
    ambiguous: list[str]  # keys that name two images on one side (photo.jpg and photo.png)


def _images_under(root: Path) -> tuple[dict[str, Path], set[str]]:
    """Image files under ``root`` by relative path without extension; and keys seen twice."""
    suffixes = {s.lower() for s in Image.registered_extensions()}
    found: dict[str, Path] = {}
    twice: set[str] = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder, name)
            if name.startswith(".") or path.suffix.lower() not in suffixes:
                continue
            key = path.relative_to(root).with_suffix("").as_posix()
            if key in found:
                twice.add(key)
            found[key] = path
    return found, twice


def pair_files(originals: Path, protected: Path) -> Pairing:
    """Pair images by relative path without extension (outputs are .jpg/.png, inputs anything)."""
    left, left_twice = _images_under(originals)
    right, right_twice = _images_under(protected)
    ambiguous = left_twice | right_twice
    common = sorted((left.keys() & right.keys()) - ambiguous)
    return Pairing(
        pairs=[Pair(k, left[k], right[k]) for k in common],
        only_original=sorted(left.keys() - right.keys() - ambiguous),
        only_protected=sorted(right.keys() - left.keys() - ambiguous),
        ambiguous=sorted(ambiguous),
    )


def attacked_victims(protected: Path) -> list[str] | None:
    """Victims named by the ``report.jsonl`` that ``protect`` wrote there (None without one)."""
    rows = read_rows(protected)
    return sorted({r["victim"] for r in rows if r.get("victim")}) if rows else None


# -- appeal (camo_engine.measure.appeal, optional) ------------------------------------------------------
def appeal_function() -> tuple[Callable[[np.ndarray], dict[str, float]] | None, str]:
    """``appeal_scores`` if the appeal module is there, else None and why (evaluation goes on)."""
    try:
        from .appeal import appeal_scores
    except ImportError as exc:
        return None, f"appeal measures skipped: camo_engine.measure.appeal is not available ({exc})"
    return appeal_scores, ""


# -- the evaluation ----------------------------------------------------------------------------
@dataclass
class Evaluation:
    originals: Path
    protected: Path
    panels: dict[str, Panel]  # per victim: the views every pair is judged under
    pairing: Pairing
    attacked: list[str] | None
    victims: dict[str, Victim]
    verdicts: list[dict[str, Any]] = field(default_factory=list)  # image x victim x condition
    images: list[dict[str, Any]] = field(default_factory=list)  # image: fidelity, appeal
    errors: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> list[dict[str, Any]]:
        """One row per victim and condition: protection rate beside the condition-alone share."""
        rows = []
        for name in self.victims:
            for view in self.panels[name].views:
                mine = [r for r in self.verdicts if r["victim"] == name and r["condition"] == view.name]
                n = len(mine)
                rows.append(
                    {
                        "victim": name,
                        "attacked": None if self.attacked is None else name in self.attacked,
                        "condition": view.name,
                        "label": view.name,
                        "images": n,
                        "protection_rate": _share(r["protected"] for r in mine),
                        "alone_rate": _share(r["alone"] for r in mine),
                        "already_rate": _share(r["already"] for r in mine),
                        "original_score_mean": _mean(r["original_score"] for r in mine),
                        "protected_score_mean": _mean(r["protected_score"] for r in mine),
                    }
                )
        return rows

    def fidelity_summary(self) -> dict[str, float]:
        def values(key: str) -> list[float]:
            return [r[key] for r in self.images if not math.isnan(r[key])]

        psnr, ssim, linf = values("psnr"), values("ssim"), values("linf")
        return {
            "psnr_median": statistics.median(psnr) if psnr else math.nan,
            "ssim_median": statistics.median(ssim) if ssim else math.nan,
            "linf_max": max(linf, default=math.nan),
            "linf_mean": _mean(linf),
        }

    def appeal_summary(self) -> dict[str, dict[str, float]]:
        """Per appeal measure: mean on originals, on protected photos, and mean change."""
        measures = sorted({k.removeprefix("appeal_original_") for r in self.images for k in r if k.startswith("appeal_original_")})
        out = {}
        for m in measures:
            before = [r[f"appeal_original_{m}"] for r in self.images]
            after = [r[f"appeal_protected_{m}"] for r in self.images]
            out[m] = {
                "original_mean": _mean(before),
                "protected_mean": _mean(after),
                "change_mean": _mean(b - a for a, b in zip(before, after)),
            }
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "originals": str(self.originals),
            "protected": str(self.protected),
            "pairs": len(self.images),
            "unpaired_originals": self.pairing.only_original,
            "unpaired_protected": self.pairing.only_protected,
            "ambiguous": self.pairing.ambiguous,
            "attacked": self.attacked,
            "panels": {name: {"name": p.name, "views": [v.name for v in p.views]} for name, p in self.panels.items()},
            "summary": self.summary(),
            "fidelity": self.fidelity_summary(),
            "appeal": self.appeal_summary(),
            "errors": self.errors,
            "notes": self.notes,
            "images": self.images,
            "verdicts": self.verdicts,
        }


def _share(flags: Iterable[bool]) -> float:
    flags = list(flags)
    return sum(flags) / len(flags) if flags else math.nan


def _mean(values: Iterable[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return statistics.fmean(kept) if kept else math.nan


def evaluate(
    originals: Path,
    protected: Path,
    victims: Mapping[str, Victim],
    panel: str | Sequence[str],
    on_pair: Callable[[Pair], None] = lambda pair: None,
    nima: Victim | None = None,
) -> Evaluation:
    """Judge every pair under every view by every victim; also fidelity and appeal.

    ``panel`` is a panel (a built-in name or a .toml/.json file, resolved per victim with its
    deployments' readings), or a list of channels read by each victim's own reading.  ``nima``
    (:func:`camo_engine.victims.nima.load_nima`) adds NIMA's rating to the appeal measures, on
    the files as they are.
    """
    originals, protected = Path(originals), Path(protected)
    panels = {name: panel_for(victim, panel) for name, victim in victims.items()}
    result = Evaluation(
        originals, protected, panels, pair_files(originals, protected), attacked_victims(protected), dict(victims)
    )
    appeal, note = appeal_function()
    if note:
        result.notes.append(note)
    elif nima is not None:
        appeal = functools.partial(appeal, nima=nima)
    # An ONNX-file victim (onnx:PATH) runs on onnxruntime: torch autograd cannot run it.
    judges = {
        name: PanelJudge(v, make_backend("torch" if v.exportable else "onnxruntime", v), panels[name])
        for name, v in victims.items()
    }
    for pair in result.pairing.pairs:
        try:
            original, candidate = load_image(pair.original).rgb, load_image(pair.protected).rgb
        except ImageLoadError as exc:
            result.errors.append({"image": pair.key, "error": str(exc)})
            continue
        if original.shape != candidate.shape:
            result.errors.append(
                {"image": pair.key, "error": f"sizes differ: {original.shape[:2]} vs {candidate.shape[:2]}"}
            )
            continue
        row: dict[str, Any] = {"image": pair.key, "original": str(pair.original), "protected": str(pair.protected)}
        row.update(fidelity(original, candidate))
        if appeal is not None:
            row.update({f"appeal_original_{k}": v for k, v in appeal(original).items()})
            row.update({f"appeal_protected_{k}": v for k, v in appeal(candidate).items()})
        result.images.append(row)
        for name, victim in victims.items():
            result.verdicts += _verdict_rows(pair.key, name, judges[name], original, candidate)
        on_pair(pair)
    return result


def channels(jpeg_qualities: Iterable[int], resize_factors: Iterable[float]) -> list[str]:
    """The photo as is, then each JPEG quality, then each downscale (Lanczos, as photo sites)."""
    factors = list(resize_factors)
    for f in factors:
        if not 0 < f <= 1:
            raise ValueError(f"resize factor must be in (0, 1], got {f}")
    return ["none", *(f"jpeg:{q}" for q in jpeg_qualities), *(f"scale:{f:g}" for f in factors)]


def panel_for(victim: Victim, panel: str | Sequence[str]) -> Panel:
    """A victim's panel: a named or file panel with its readings, or channels read its own way."""
    if isinstance(panel, str):
        return resolve_panel(panel, victim.deployment_readings)
    return product("conditions", panel, ("own",))


def jpeg_quality_of(view: View) -> int | None:
    """The quality of a view that is a single JPEG re-encode read the victim's own way."""
    steps = view.channel.steps
    if view.reading.kind == "own" and len(steps) == 1 and steps[0].op == "jpeg":
        return int(steps[0].value)
    return None


def _verdict_rows(
    key: str, name: str, judge: PanelJudge, original: np.ndarray, candidate: np.ndarray
) -> list[dict[str, Any]]:
    victim = judge.victim
    [base] = judge.baseline([original], [original])
    [verdicts] = judge.judge([candidate], [base])
    return [
        {
            "image": key,
            "victim": name,
            "condition": v.view,
            "original_says": victim.describe(v.before)[0],
            "protected_says": victim.describe(v.after)[0],
            "original_score": scores(victim, v.before, clean)[0],
            "protected_score": scores(victim, v.after, clean)[0],
            "protected": v.protected,
            "alone": v.alone,
            "already": v.already,
        }
        for v, clean in zip(verdicts, base.clean)
    ]


# -- files ---------------------------------------------------------------------------------------
def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Rows as CSV; the columns are every key, in order of first appearance."""
    with open(path, "w", newline="", encoding="utf-8") as fp:
        writer = csv.DictWriter(fp, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_outputs(evaluation: Evaluation, out: Path) -> list[Path]:
    """evaluation.json (everything), evaluation.csv (summary), verdicts.csv, images.csv."""
    out.mkdir(parents=True, exist_ok=True)
    data = out / "evaluation.json"
    data.write_text(strict_json.dumps(evaluation.as_dict(), indent=2))
    return [
        data,
        write_csv(out / "evaluation.csv", evaluation.summary()),
        write_csv(out / "verdicts.csv", evaluation.verdicts),
        write_csv(out / "images.csv", evaluation.images),
    ]


def write_plots(evaluation: Evaluation, folder: Path, sheet_rows: int = CONTACT_ROWS) -> list[Path]:
    """PNGs: score histograms per victim, protection rate against JPEG quality, a contact sheet."""
    folder.mkdir(parents=True, exist_ok=True)
    # An ensemble has no one score to draw (its members have their own histograms).
    scored = [n for n in evaluation.victims if any(not math.isnan(r["original_score"]) for r in evaluation.verdicts if r["victim"] == n)]
    written = [_plot_histograms(evaluation, folder / f"scores_{name}.png", name) for name in scored]
    written.append(_plot_rates(evaluation, folder / "protection_vs_jpeg.png"))
    written.append(_plot_contact_sheet(evaluation, folder / "contact_sheet.png", sheet_rows))
    return written


def _plot_histograms(evaluation: Evaluation, path: Path, name: str) -> Path:
    victim = evaluation.victims[name]
    # At most six views, so that a large panel still gives a readable figure.
    views = evaluation.panels[name].views[:6]
    fig = figure(3.2 * len(views), 3.2)
    axes = fig.subplots(1, len(views), squeeze=False)[0]
    classifier = victim.kind == "classifier"
    bins = np.linspace(0, 1, 21) if classifier else 20
    for ax, view in zip(axes, views):
        mine = [r for r in evaluation.verdicts if r["victim"] == name and r["condition"] == view.name]
        ax.hist([r["original_score"] for r in mine], bins=bins, alpha=0.6, label="original", color="tab:blue")
        ax.hist([r["protected_score"] for r in mine], bins=bins, alpha=0.6, label="protected", color="tab:red")
        threshold = getattr(victim, "threshold", None)
        if not classifier and threshold is not None:
            ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label="threshold")
        ax.set_title(view.name, fontsize="small")
        ax.set_xlabel("P(original top-1 class)" if classifier else "score")
    axes[0].set_ylabel("images")
    axes[0].legend(fontsize="small")
    fig.suptitle(f"{name}: victim score before and after protection")
    fig.savefig(path)
    return path


def _plot_rates(evaluation: Evaluation, path: Path) -> Path:
    fig = figure(6, 4)
    ax = fig.subplots()
    summary = evaluation.summary()
    for i, name in enumerate(evaluation.victims):
        color = f"C{i}"
        views = evaluation.panels[name].views
        points = sorted(
            (q, r) for v in views if (q := jpeg_quality_of(v)) is not None
            for r in summary if r["victim"] == name and r["condition"] == v.name
        )
        qualities = [q for q, _ in points]
        ax.plot(qualities, [r["protection_rate"] for _, r in points], "o-", color=color, label=f"{name}: protected")
        ax.plot(qualities, [r["alone_rate"] for _, r in points], "x:", color=color, label=f"{name}: JPEG alone")
        as_files = [r for r in summary if r["victim"] == name and r["condition"] == "none|own"]
        if as_files:
            ax.axhline(as_files[0]["protection_rate"], color=color, linestyle="--", linewidth=0.8, label=f"{name}: as files")
    ax.set_xticks(sorted({q for p in evaluation.panels.values() for v in p.views if (q := jpeg_quality_of(v)) is not None}))
    ax.set_xlabel("JPEG quality of the re-encode")
    ax.set_ylabel("share of images")
    ax.set_ylim(-0.02, 1.02)
    ax.invert_xaxis()  # from mild to harsh re-encoding
    ax.legend(fontsize="small")
    ax.set_title("Protection rate against JPEG quality")
    fig.savefig(path)
    return path


def _plot_contact_sheet(evaluation: Evaluation, path: Path, rows: int) -> Path:
    sheet = []
    for row in evaluation.images[:rows]:
        original, candidate = load_image(Path(row["original"])).rgb, load_image(Path(row["protected"])).rgb
        amplified, gain = amplified_difference(original, candidate)
        sheet.append([
            (row["image"], thumbnail(original)),
            (f"protected, PSNR {row['psnr']:.1f} dB", thumbnail(candidate)),
            (f"difference x{gain:.0f}", thumbnail(amplified)),
        ])
    return write_contact_sheet(sheet, path, "original | protected | amplified difference")
