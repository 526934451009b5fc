"""Protect a stream of photos so that one photo the attack fails on fails alone.

An exception inside a batch step ends the attack with every photo then in flight.  Those photos
are retried one by one: only a photo that fails on its own gets the error, and the stream goes
on after it.  ``protect`` (files), ``serve`` (requests) and ``--ray`` (actors) all protect
through :func:`protect_each`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

import numpy as np

from .attack import IDLE, Idle
from .protector import Protected, Protector

T = TypeVar("T")


def protect_each(
    protector: Protector, photos: Iterable[tuple[T, np.ndarray] | Idle]
) -> Iterator[tuple[T, Protected | Exception]]:
    """Protect ``(tag, rgb)`` pairs; yields ``(tag, result)`` or ``(tag, exception)`` as each
    photo finishes (not in input order).

    ``photos`` is read lazily, may yield :data:`~camo_engine.attack.IDLE` (nothing to add yet)
    and must not raise: a generator that raised is finished, and every later photo with it, so
    a source reports its own failures itself.

    Example:
        >>> for path, outcome in protect_each(protector, ((p, load(p)) for p in paths)):
        ...     print(path, outcome.protected if isinstance(outcome, Protected) else outcome)
    """
    # By stream position; a dict so that a service's endless stream keeps only what is in flight.
    pending: dict[int, tuple[T, np.ndarray]] = {}
    count = 0

    def stream() -> Iterator[np.ndarray | Idle]:
        nonlocal count
        for photo in photos:
            count += 1  # IDLE takes a place in the numbering too
            if photo is IDLE:
                yield IDLE
            else:
                pending[count - 1] = photo
                yield photo[1]

    source, base = stream(), 0
    while True:
        try:
            # Result indices count from the start of this call's stream.
            for result in protector.protect_iter(source):
                tag, _ = pending.pop(base + result.index)
                yield tag, result
            return
        except Exception:  # noqa: BLE001 - one photo's failure must not end the batch
            # The photos in flight are lost with the attack that raised: each is retried alone.
            failed, base = sorted(pending), count
            for slot in failed:
                tag, rgb = pending.pop(slot)
                try:
                    [result] = protector.protect_iter([rgb])
                except Exception as exc:  # noqa: BLE001
                    yield tag, exc
                else:
                    yield tag, result
