"""The `camo-engine protect` batch: bad files, inputs untouched, resume, metadata, SIGKILL."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import typer
from awkward_files import OWNER, SERIAL, build_corpus
from camo_engine.cli import app
from camo_engine.io import report
from camo_engine.io.report import read_rows
from PIL import Image
from typer.testing import CliRunner

FAST = ["-v", "efficientnet-lite0", "--strength", "low", "--steps", "2"]


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("corpus")
    return folder, build_corpus(folder)


@pytest.fixture(scope="module")
def batch(corpus, tmp_path_factory):
    """One run of the CLI over the whole awkward corpus."""
    folder, expected = corpus
    before = digest(folder)
    out = tmp_path_factory.mktemp("out")
    result = CliRunner().invoke(app, ["protect", str(folder), "-o", str(out), *FAST])
    return folder, expected, out, before, result


@pytest.mark.slow
def test_bad_files_get_one_clear_row_and_the_batch_goes_on(batch):
    folder, expected, out, _, result = batch
    assert result.exit_code == 1, result.output  # some inputs failed
    rows = {Path(r["input"]).name: r for r in read_rows(out)}
    for kind, exp in expected.items():
        row = rows[exp.path.name]
        if exp.ok:
            assert row["status"] == "ok", (kind, row["error"])
            assert Path(row["output"]).is_file()
        else:
            assert row["status"] == "error", kind
            assert exp.reason.lower() in row["error"].lower(), (kind, row["error"])
            assert f"{exp.path}: " in result.output  # one stderr line names the file


@pytest.mark.slow
def test_summary_json_is_written_with_the_report(batch):
    _, _, out, _, _ = batch
    # parse_constant fails the test on NaN/Infinity: summary.json must be standard JSON.
    summary = json.loads((out / "summary.json").read_text(), parse_constant=pytest.fail)
    rows = read_rows(out)
    assert summary["processed"] == sum(r["status"] == "ok" for r in rows)
    assert summary["failed"] == sum(r["status"] == "error" for r in rows) > 0


@pytest.mark.slow
def test_inputs_are_never_changed(batch):
    folder, _, _, before, _ = batch
    assert digest(folder) == before


@pytest.mark.slow
def test_private_metadata_is_stripped_by_default(batch):
    folder, expected, out, _, _ = batch
    row = next(r for r in read_rows(out) if Path(r["input"]).name == expected["jpeg_private"].path.name)
    data = Path(row["output"]).read_bytes()
    assert SERIAL.encode() not in data and OWNER.encode() not in data
    assert any("GPS" in item for item in row["metadata_removed"])
    with Image.open(row["output"]) as im:
        assert not im.getexif().get_ifd(0x8825)  # no GPS IFD


@pytest.mark.slow
def test_tiny_and_twelve_megapixel_photos_are_protected(batch):
    _, expected, out, _, _ = batch
    rows = {Path(r["input"]).name: r for r in read_rows(out)}
    for kind in ("photo_1x1", "photo_12mp"):
        row = rows[expected[kind].path.name]
        # Protected by the attack (within FAST's 2 steps), not by the re-encode alone.
        assert row["protected"] and row["win"] and 1 <= row["steps"] <= 2, (kind, row)
        with Image.open(row["output"]) as im:
            assert im.size[::-1] == expected[kind].shape


def make_photos(folder: Path, photos: dict[str, np.ndarray], count: int) -> None:
    names = sorted(photos)
    for i in range(count):
        rgb = photos[names[i % len(names)]]
        Image.fromarray(rgb).save(folder / f"photo_{i:03d}.png")


def test_resume_skips_completed_inputs(tmp_path, photos):
    src = tmp_path / "in"
    src.mkdir()
    make_photos(src, photos, 3)
    out = tmp_path / "out"
    runner = CliRunner()
    first = runner.invoke(app, ["protect", str(src), "-o", str(out), *FAST])
    assert first.exit_code == 0, first.output
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.jpg")}
    make_photos(src, {"x": photos["coffee"]}, 1)  # photo_000 again: unchanged name, already done
    (src / "photo_new.png").write_bytes((src / "photo_001.png").read_bytes())
    second = runner.invoke(app, ["protect", str(src), "-o", str(out), "--resume", *FAST])
    assert second.exit_code == 0, second.output
    rows = read_rows(out)
    assert len(rows) == 4  # three from the first run, one new
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_resume_into_a_report_with_other_columns_is_refused(tmp_path, photos):
    """A report.csv from a version with other columns: refused, naming the file, left as it was."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    make_photos(src, photos, 1)
    older = [c for c in report.COLUMNS if c != report.COLUMNS[-1]]  # one column fewer than today's
    (out / "report.csv").write_text(",".join(older) + "\n" + ",".join("x" for _ in older) + "\n")
    before = (out / "report.csv").read_bytes()
    result = CliRunner().invoke(app, ["protect", str(src), "-o", str(out), "--resume", *FAST])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())  # rich wraps long lines
    assert f"{out / 'report.csv'}: its columns are not this version's" in message
    assert f"missing: {report.COLUMNS[-1]}" in message
    assert (out / "report.csv").read_bytes() == before and not list(out.glob("*.jpg"))


def test_report_writer_appends_under_todays_header(tmp_path):
    with report.ReportWriter(tmp_path) as writer:
        writer.write({"input": "a", "status": "ok"})
    with report.ReportWriter(tmp_path) as writer:  # same columns: appended
        writer.write({"input": "b", "status": "ok"})
    lines = (tmp_path / "report.csv").read_text().splitlines()
    assert lines[0] == ",".join(report.COLUMNS) and len(lines) == 3


def test_output_inside_input_is_refused(tmp_path, photos):
    make_photos(tmp_path, photos, 1)
    result = CliRunner().invoke(app, ["protect", str(tmp_path), "-o", str(tmp_path / "out"), *FAST])
    assert result.exit_code == 2
    assert "out" in result.output


def test_missing_input_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["protect", str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "o"), *FAST])
    assert result.exit_code == 2
    assert "nope.jpg" in result.output


@pytest.mark.parametrize("module", ["camo_engine", "camo_engine.cli"])
def test_runs_as_a_module(module):
    """``python -m`` works for the package and the cli module (no import cycle between commands)."""
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "protect" in result.stdout


def test_victims_lists_every_victim():
    result = CliRunner().invoke(app, ["victims"])
    assert result.exit_code == 0
    for name in ("brisque", "efficientnet-lite0", "resnet50-places365"):
        assert name in result.output


@pytest.mark.slow
def test_sigkill_leaves_no_partial_image(tmp_path, photos):
    """Kill a running batch with SIGKILL: every output present is a complete image; resume finishes."""
    src = tmp_path / "in"
    src.mkdir()
    make_photos(src, photos, 24)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "camo_engine", "protect", str(src), "-o", str(out), "--format", "png", "--batch-size", "2", *FAST]
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(out.glob("*.png"))) < 3:
        assert proc.poll() is None, f"protect exited ({proc.returncode}) before the kill:\n{log.read_text()}"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = list(out.glob("*.png"))
    assert 3 <= len(written) < 24, "the kill should land mid-batch"
    for path in written:
        with Image.open(path) as im:
            im.load()  # raises on a truncated file
    visible = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert all(p.suffix in {".png", ".jsonl", ".csv"} for p in visible)
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    assert len(list(out.glob("*.png"))) == 24
    ok_inputs = {r["input"] for r in read_rows(out) if r["status"] == "ok"}
    assert len(ok_inputs) == 24


def test_contact_sheet_is_written(tmp_path, photos):
    src = tmp_path / "in"
    src.mkdir()
    make_photos(src, photos, 2)
    sheet = tmp_path / "sheet.png"
    result = CliRunner().invoke(
        app, ["protect", str(src), "-o", str(tmp_path / "out"), "--enhance", "pillow", "--contact-sheet", str(sheet), *FAST]
    )
    assert result.exit_code == 0, result.output
    with Image.open(sheet) as im:
        assert im.format == "PNG" and im.size[0] > 800


def test_step_options_are_checked_before_any_work(tmp_path, photos):
    make_photos(tmp_path, photos, 1)
    for option, value in (("--momentum", "-1"), ("--alpha-start", "0.5"), ("--blur-sigma", "-1")):
        result = CliRunner().invoke(app, ["protect", str(tmp_path), "-o", str(tmp_path / "o"), option, value, *FAST])
        assert result.exit_code == 2, result.output
        assert option.lstrip("-").replace("-", "_") in result.output
    assert not (tmp_path / "o").exists()


def test_protect_step_defaults_are_the_strength_presets():
    """Options left unset keep the chosen strength's values; medium is the library default."""
    import inspect

    from camo_engine.attack import PRESETS, AttackConfig
    from camo_engine.cli import protect
    from camo_engine.cli.options import attack_config

    parameters = inspect.signature(protect).parameters
    assert parameters["strength"].default == "medium"
    assert attack_config("medium", momentum=None, blur_sigma=None) == AttackConfig(steps=60, check_every=1)
    for name, preset in PRESETS.items():
        assert attack_config(name) == preset.config
    assert attack_config("high").panel == "high" and attack_config("low").panel == "low"


def test_attack_config_parses_levels_for_every_command():
    from camo_engine.cli.options import attack_config

    config = attack_config("low", "8/255", "0.004", "4/255", steps=3)
    assert (config.eps, config.alpha, config.alpha_start, config.steps) == (8 / 255, 0.004, 4 / 255, 3)
    assert attack_config("low", "8/255", "1/255", None).alpha_start is None
    with pytest.raises(typer.BadParameter):
        attack_config("low", "eight", "1/255", None)
    with pytest.raises(ValueError, match="unknown strength"):
        attack_config("extreme")


def test_a_photo_the_attack_fails_on_fails_alone(tmp_path, photos, attack_fails_on):
    """An error inside a batch step (the blur once crashed on a 1x1 photo) fails that photo
    with a row naming it; the rest of its batch and the photos after it are protected."""
    src = tmp_path / "in"
    src.mkdir()
    names = sorted(photos)[:4]
    for i, name in enumerate(names):
        Image.fromarray(photos[name]).save(src / f"photo_{i}.png")
    attack_fails_on(photos[names[1]].shape[:2])
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["protect", str(src), "-o", str(out), "--batch-size", "2", *FAST]
    )
    assert result.exit_code == 1, result.output
    rows = {Path(r["input"]).name: r for r in read_rows(out)}
    assert sorted(rows) == [f"photo_{i}.png" for i in range(4)]
    assert rows["photo_1.png"]["status"] == "error"
    assert "cannot step this one" in rows["photo_1.png"]["error"]
    assert "photo_1.png: protecting failed" in result.output
    for i in (0, 2, 3):
        assert rows[f"photo_{i}.png"]["status"] == "ok" and Path(rows[f"photo_{i}.png"]["output"]).is_file()
