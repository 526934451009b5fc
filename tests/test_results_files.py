"""The committed results are what the README promises: standard JSON, which any parser reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _reject(constant: str) -> None:
    raise ValueError(f"non-standard JSON constant {constant}")


@pytest.mark.parametrize("path", sorted(RESULTS.rglob("*.json")), ids=lambda p: p.relative_to(RESULTS).as_posix())
def test_committed_json_is_standard(path: Path) -> None:
    """NaN, Infinity and -Infinity are Python's extensions, not JSON: parse_constant refuses them."""
    json.loads(path.read_text(), parse_constant=_reject)


def test_there_are_committed_results() -> None:
    assert len(list(RESULTS.rglob("*.json"))) >= 4
