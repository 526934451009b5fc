"""Result files are standard JSON: non-finite numbers become null and are named."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from camo_engine.io import strict_json


def test_non_finite_numbers_are_null_and_named_by_pointer():
    value = {"psnr": math.inf, "rows": [{"a/b": np.float64("nan")}, -math.inf], "ok": np.float32(0.5), "n": np.int64(3)}
    data = json.loads(strict_json.dumps(value), parse_constant=pytest.fail)
    assert data["psnr"] is None and data["rows"] == [{"a/b": None}, None]
    assert data["ok"] == 0.5 and data["n"] == 3
    assert data["non_finite"] == {"/psnr": "inf", "/rows/0/a~1b": "nan", "/rows/1": "-inf"}


def test_finite_values_are_left_alone():
    value = {"x": [1, 2.5, "s", None, True], "shape": (3, 4)}
    assert json.loads(strict_json.dumps(value)) == {"x": [1, 2.5, "s", None, True], "shape": [3, 4]}


def test_a_bare_non_finite_value_is_still_standard_json():
    assert strict_json.dumps([math.nan]) == "[null]"


def test_loads_puts_back_what_dumps_named():
    from camo_engine.io.strict_json import dumps, loads

    value = {"psnr": float("inf"), "views": [{"after": float("nan"), "a/b": 1}], "x": [1.0, float("-inf")]}
    back = loads(dumps(value))
    assert back["psnr"] == math.inf and back["x"] == [1.0, -math.inf] and math.isnan(back["views"][0]["after"])
    assert back["views"][0]["a/b"] == 1 and "non_finite" not in back
