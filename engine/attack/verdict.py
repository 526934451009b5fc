"""The one judge: what a victim says of a photo as it will be seen, against its original.

A photo is judged under every view of a panel (:mod:`camo_engine.threat`): the platform's
channel (real codecs and resizers), then a deployment's reading, then the victim's network.
Under each view it is compared with the original seen through the *same* view, and three
honest states are kept beside the verdict:

* ``already``: the original as it is (no channel, same reading) is already judged so
  (a regressor's score already past the threshold);
* ``alone``: the channel (and enhancement) alone, without the attack, changes the verdict;
* ``protected``: the candidate is judged so.  A *win* is protected and neither of the above.

The attack loop, ``evaluate`` and the benchmark harness all judge through :class:`PanelJudge`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from ..backends.base import GradientBackend
from ..io import jpeg
from ..threat import Channel, Panel, View
from ..threat.readings import Reading
from ..victims.base import Victim

OUTPUT_BATCH = 16  # network inputs per forward when judging

T = TypeVar("T")


def by_geometry(items: Iterable[T], victim: Victim, image: Callable[[T], Tensor]) -> dict[tuple[int, int], list[T]]:
    """Group items by the victim geometry of their (3, H, W) ``image(item)``, keeping order."""
    groups: dict[tuple[int, int], list[T]] = {}
    for item in items:
        x = image(item)
        groups.setdefault(victim.geometry(x.shape[1], x.shape[2]), []).append(item)
    return groups


def network_input(victim: Victim, reading: Reading, seen: np.ndarray | Tensor) -> Tensor:
    """The victim's network input for what a channel delivered, through ``reading``: real
    pixels (uint8 array) for verdicts, or a differentiable (3, H, W) tensor for gradients."""
    if isinstance(seen, np.ndarray):
        if reading.kind == "own":
            return victim.preprocess(jpeg.to_float(seen))
        return victim.normalise(reading.real(seen))
    if reading.kind == "own":
        return victim.preprocess(seen)
    return victim.normalise(reading.torch(seen[None])[0])


def forward_all(victim: Victim, backend: GradientBackend, inputs: Sequence[Tensor]) -> list[Tensor]:
    """Network outputs (no gradient) for inputs of any shapes, batched by shape, in order."""
    rows: dict[int, Tensor] = {}
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, x in enumerate(inputs):
        groups.setdefault(tuple(x.shape), []).append(i)
    for indices in groups.values():
        for start in range(0, len(indices), OUTPUT_BATCH):
            part = indices[start : start + OUTPUT_BATCH]
            with torch.no_grad():
                out = backend.outputs(torch.stack([inputs[i] for i in part]))
            rows.update(zip(part, out))
    return [rows[i] for i in range(len(inputs))]


@dataclass
class Baseline:
    """What the victim says of one photo before the attack, per view of the panel."""

    clean: list[Tensor]  # per view: the original as it is, through the view's reading
    before: list[Tensor]  # per view: the un-attacked output through the view
    targets: list[Tensor]  # per view: the attack target built from the two
    already: list[bool]  # per view: the original as it is already counts as protected
    alone: list[bool]  # per view: the channel (and enhancement) alone changes the verdict


@dataclass
class ViewVerdict:
    """One photo under one view."""

    view: str
    before: Tensor  # (1, ...) outputs on the un-attacked output through the view
    after: Tensor  # (1, ...) outputs on the candidate through the view
    protected: bool
    alone: bool
    already: bool

    @property
    def win(self) -> bool:
        return self.protected and not self.alone and not self.already


def panel_states(verdicts: Sequence[ViewVerdict]) -> dict[str, bool]:
    """A photo's states over a whole panel: protected under every view; ``already`` and
    ``alone`` when that holds under every view without the attack; ``win`` otherwise."""
    protected = all(v.protected for v in verdicts)
    already = all(v.already for v in verdicts)
    alone = not already and all(v.already or v.alone for v in verdicts)
    return {"protected": protected, "already": already, "alone": alone, "win": protected and not (already or alone)}


class PanelJudge:
    """Judges photos under every view of ``panel``, batching the victim's forward passes.

    Example:
        >>> judge = PanelJudge(victim, backend, builtin_panel("low", victim.deployment_readings))
        >>> [base] = judge.baseline([original_rgb], [original_rgb])
        >>> [verdicts] = judge.judge([candidate_rgb], [base])
    """

    def __init__(self, victim: Victim, backend: GradientBackend, panel: Panel, written: str = "none") -> None:
        self.victim = victim
        self.backend = backend
        self.panel = panel
        # How a candidate becomes the file that is shared (e.g. "jpeg:90"): every view starts
        # from what that file decodes to.  Originals are judged as they are.
        self.written = Channel.parse(written)
        self._readings = tuple(dict.fromkeys(v.reading for v in panel.views))

    @property
    def views(self) -> tuple[View, ...]:
        return self.panel.views

    def headline(self, jpeg_quality: int) -> int:
        """The view whose outputs the report shows as before/after: the victim's own reading
        after the JPEG re-encode when the panel has it, else the panel's first view."""
        names = [v.name for v in self.views]
        wanted = f"jpeg:{jpeg_quality}|own"
        return names.index(wanted) if wanted in names else 0

    def outputs(self, rgbs: Sequence[np.ndarray], views: Sequence[Sequence[int]] | None = None) -> list[dict[int, Tensor]]:
        """Per photo, the outputs under each view index asked for (default: every view).

        Each channel is applied once per photo and shared by the readings that follow it."""
        asked = views if views is not None else [range(len(self.views))] * len(rgbs)
        inputs: list[Tensor] = []
        keys: list[tuple[int, int]] = []
        for p, (rgb, indices) in enumerate(zip(rgbs, asked)):
            rgb = self.written.real(rgb)
            delivered: dict[object, np.ndarray] = {}
            for v in indices:
                view = self.views[v]
                if view.channel not in delivered:
                    delivered[view.channel] = view.channel.real(rgb)
                inputs.append(network_input(self.victim, view.reading, delivered[view.channel]))
                keys.append((p, v))
        out: list[dict[int, Tensor]] = [{} for _ in rgbs]
        for (p, v), row in zip(keys, forward_all(self.victim, self.backend, inputs)):
            out[p][v] = row[None]
        return out

    def clean(self, originals: Sequence[np.ndarray]) -> list[dict[Reading, Tensor]]:
        """Per photo, the outputs on the original as it is, through each reading of the panel."""
        inputs = [network_input(self.victim, r, o) for o in originals for r in self._readings]
        rows = forward_all(self.victim, self.backend, inputs)
        n = len(self._readings)
        return [dict(zip(self._readings, (r[None] for r in rows[i * n : (i + 1) * n]))) for i in range(len(originals))]

    def baseline(self, originals: Sequence[np.ndarray], starts: Sequence[np.ndarray]) -> list[Baseline]:
        """Targets and honest states per view, for originals and their un-attacked outputs."""
        clean = self.clean(originals)
        seen = self.outputs(starts)
        out = []
        for c, s in zip(clean, seen):
            base = Baseline([], [], [], [], [])
            for v, view in enumerate(self.views):
                clean_v, before = c[view.reading], s[v]
                unchanged = self.victim.reference(clean_v, clean_v)
                already = bool(self.victim.is_protected(clean_v, unchanged)[0])
                base.clean.append(clean_v)
                base.before.append(before)
                base.targets.append(self.victim.reference(clean_v, before)[0])
                base.already.append(already)
                base.alone.append(not already and bool(self.victim.is_protected(before, unchanged)[0]))
            out.append(base)
        return out

    def judge(
        self,
        rgbs: Sequence[np.ndarray],
        baselines: Sequence[Baseline],
        views: Sequence[Sequence[int]] | None = None,
    ) -> list[list[ViewVerdict]]:
        """Per photo, a verdict under each view asked for (default: every view)."""
        asked = views if views is not None else [range(len(self.views))] * len(rgbs)
        results = []
        for base, outputs, indices in zip(baselines, self.outputs(rgbs, asked), asked):
            row = []
            for v in indices:
                ok = bool(self.victim.is_protected(outputs[v], base.targets[v][None])[0])
                row.append(ViewVerdict(self.views[v].name, base.before[v], outputs[v], ok, base.alone[v], base.already[v]))
            results.append(row)
        return results

    def judge_pairs(
        self, originals: Sequence[np.ndarray], candidates: Sequence[np.ndarray]
    ) -> list[list[ViewVerdict]]:
        """Judge (H, W, 3) uint8 candidates against their originals under every view (the
        originals are also the un-attacked outputs: no enhancement to account for)."""
        return self.judge(candidates, self.baseline(originals, originals))
