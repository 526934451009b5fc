"""The README's commands and library example are the ones that run."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_opens_with_the_two_commands():
    first = blocks("bash")[0].strip().splitlines()
    commands = [line for line in first if line and not line.startswith("#")]
    assert commands[0].endswith("camo-engine protect --samples -o protected/")
    assert commands[1] == "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/pytest"
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1] in ci


def test_library_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    [example] = blocks("python")
    exec(compile(example, "README.md", "exec"), {})
    assert sorted(p.name for p in tmp_path.glob("protected_*.jpg")) == ["protected_0.jpg", "protected_1.jpg"]
