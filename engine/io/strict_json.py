"""Standard JSON for result files: no ``NaN`` or ``Infinity`` (which ``json`` writes by default
and most other parsers reject).

A non-finite number becomes ``null``, and a top-level object gets a ``"non_finite"`` entry
naming each such value by its JSON pointer (RFC 6901) and what it was (``"inf"``, ``"-inf"``
or ``"nan"``): the PSNR of two identical images is infinite, not missing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

NON_FINITE_KEY = "non_finite"


def _pointer_part(key: object) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def finite(value: Any, pointer: str = "", found: dict[str, str] | None = None) -> Any:
    """``value`` with every non-finite float replaced by None, recorded in ``found`` by pointer.

    NumPy scalars and arrays become Python numbers and lists, tuples become lists.
    """
    found = {} if found is None else found
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        found[pointer] = str(value)  # "inf", "-inf", "nan"
        return None
    if isinstance(value, Mapping):
        return {k: finite(v, f"{pointer}/{_pointer_part(k)}", found) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v, f"{pointer}/{i}", found) for i, v in enumerate(value)]
    return value


def dumps(value: Any, indent: int | None = None) -> str:
    """Standard JSON of ``value``: non-finite numbers as null, named under ``"non_finite"`` when
    ``value`` is a mapping.  Types JSON lacks (paths, dates) are written as strings."""
    found: dict[str, str] = {}
    clean = finite(value, "", found)
    if found and isinstance(clean, dict):
        clean[NON_FINITE_KEY] = found
    return json.dumps(clean, indent=indent, default=str, allow_nan=False)


def loads(text: str) -> Any:
    """The inverse of :func:`dumps`: the values named under ``"non_finite"`` put back as the
    floats they were, and that entry removed."""
    value = json.loads(text)
    if not isinstance(value, dict):
        return value
    for pointer, number in value.pop(NON_FINITE_KEY, {}).items():
        *path, last = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
        holder = value
        for part in path:
            holder = holder[int(part) if isinstance(holder, list) else part]
        holder[int(last) if isinstance(holder, list) else last] = float(number)
    return value
