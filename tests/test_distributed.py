"""`protect --ray`: on a local Ray instance (2 CPUs) the same output bytes, verdicts and report
as the local run, a bad file as an error row, and --resume."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from camo_engine.cli import app
from camo_engine.io.report import read_rows

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

pytestmark = pytest.mark.slow
OPTIONS = ["-v", "efficientnet-lite0", "--steps", "3"]
# What may differ between two runs of the same photos: where the file went and the time taken.
RUN_FIELDS = ("output", "seconds")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_gives_the_local_bytes_and_report_and_resumes(local_ray, tmp_path, small_photos):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(small_photos[0]).save(src / "first.png")
    Image.fromarray(small_photos[5]).save(src / "sub" / "second.jpg", quality=95)
    (src / "notes.jpg").write_text("not a photo at all\n")
    runs = {}
    for name, extra in (("local", []), ("ray", ["--ray", "local"])):
        out = tmp_path / name
        result = CliRunner().invoke(app, ["protect", str(src), "-o", str(out), *OPTIONS, *extra])
        assert result.exit_code == 1, result.output  # the bad file failed, the photos did not
        runs[name] = out
    files = {name: sorted(p.relative_to(out) for p in out.rglob("*.jpg")) for name, out in runs.items()}
    assert files["ray"] == files["local"] == [Path("first.jpg"), Path("sub/second.jpg")]
    for relative in files["local"]:
        assert (runs["ray"] / relative).read_bytes() == (runs["local"] / relative).read_bytes()
    rows = {name: {r["input"]: r for r in read_rows(out)} for name, out in runs.items()}
    assert rows["ray"].keys() == rows["local"].keys()
    for source, local_row in rows["local"].items():
        ray_row = rows["ray"][source]
        assert list(ray_row) == list(local_row)
        assert {k: v for k, v in ray_row.items() if k not in RUN_FIELDS} == {
            k: v for k, v in local_row.items() if k not in RUN_FIELDS
        }
    assert rows["ray"][str(src / "notes.jpg")]["error"] == "not an image: the file contains text"
    stamps = {p: p.stat().st_mtime_ns for p in runs["ray"].rglob("*.jpg")}
    again = CliRunner().invoke(app, ["protect", str(src), "-o", str(runs["ray"]), *OPTIONS, "--ray", "local", "--resume"])
    assert again.exit_code == 1, again.output
    retried = read_rows(runs["ray"])[len(rows["ray"]) :]
    assert [r["input"] for r in retried] == [str(src / "notes.jpg")]  # only the failed input
    assert {p: p.stat().st_mtime_ns for p in runs["ray"].rglob("*.jpg")} == stamps


def test_protect_dataset_is_a_ray_dataset(local_ray, small_photos, tmp_path):
    from camo_engine.attack import AttackConfig
    from camo_engine.distributed import protect_dataset

    Image.fromarray(small_photos[2]).save(tmp_path / "photo.png")
    ds = ray.data.read_binary_files(str(tmp_path), include_paths=True)
    out = protect_dataset(ds, victim="efficientnet-lite0", config=AttackConfig(steps=2))
    assert isinstance(out, ray.data.Dataset)
    [row] = out.take_all()
    assert row["status"] == "ok" and row["data"][:2] == b"\xff\xd8"
