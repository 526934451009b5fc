"""Batched I-FGSM with per-image early stop, judged on the pixels that will be written.

The loop keeps up to ``batch_size`` photos (and ``pixel_budget`` pixels) in flight.  Each
iteration runs one forward + input-gradient pass per victim geometry; every photo takes a sign
step (see :mod:`.direction`), is projected onto the eps-ball around its start, re-encoded as a
real JPEG and judged by a forward-only pass (:mod:`.verdict`).  A protected photo, or one out of
steps, leaves at once and its place is refilled from the queue.

With a differentiable ``transform`` (an enhancer: "attack through the enhancer") the victim sees
``transform(x)``, the gradient flows back to the input ``x``, and the output is
``transform(x_adv)``.  Verdicts are always against the *original* photo.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..backends.base import GradientBackend
from ..io import jpeg
from ..kernels.ifgsm_step import sign_step_project
from ..victims.base import Victim, check_image
from .config import AttackConfig
from .direction import step_direction
from .verdict import (
    Verdict,
    baseline,
    by_geometry,
    jpeg_condition,
    outputs_of,
    seen_outputs,
    verdicts,
)


@dataclass
class AttackResult:
    """The outcome for one photo."""

    index: int
    rgb: np.ndarray  # (H, W, 3) uint8: the protected photo as it will be written
    unattacked: np.ndarray  # (H, W, 3) uint8: the output without the attack (fidelity reference)
    steps: int  # gradient steps spent
    before: Verdict  # the un-attacked output (the original, enhanced if enhancing) after JPEG
    after: Verdict  # the protected photo, after JPEG re-encoding
    jpeg_alone: bool  # re-encoding (and enhancement) alone already changed the clean verdict
    seconds: float  # wall time from entering the batch to leaving it (the batch is shared)

    @property
    def protected(self) -> bool:
        return self.after.protected


@dataclass
class _Item:
    index: int
    start: Tensor
    x: Tensor
    target: Tensor
    before: Verdict
    jpeg_alone: bool
    geometry: tuple[int, int]
    unattacked: np.ndarray
    steps: int = 0
    velocity: Tensor | None = None  # the momentum buffer (MI-FGSM), once a step is taken
    rgb: np.ndarray | None = None  # the judged output pixels, once finished: what is written
    pixels: int = field(init=False)
    admitted: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.pixels = self.x.shape[1] * self.x.shape[2]


class IFGSM:
    """Iterative FGSM toward the victim's target, one sign step per iteration.

    >>> attack = IFGSM(victim, backend, AttackConfig(eps=8/255, alpha=1/255, steps=40))
    >>> for result in attack.run(images): ...
    """

    def __init__(
        self,
        victim: Victim,
        backend: GradientBackend,
        config: AttackConfig,
        transform: torch.nn.Module | None = None,
    ) -> None:
        if transform is not None and not getattr(transform, "differentiable", True):
            raise ValueError(
                f"cannot attack through {getattr(transform, 'name', transform)!r}: it is not "
                "differentiable; enhance first and attack the enhanced photo instead"
            )
        self.victim = victim
        self.backend = backend
        self.config = config
        self.transform = transform

    def output(self, x: Tensor) -> Tensor:
        """The photo that will be shared for the attacked input ``x``."""
        return x if self.transform is None else self.transform(x[None])[0]

    def _project(self, x: Tensor, centre: Tensor) -> Tensor:
        """Onto the L-inf ball of radius eps around ``centre``, then into [0, 1]."""
        eps = self.config.eps
        # Contiguous: the fused step kernel updates it in place as one flat array.
        return (centre + (x - centre).clamp(-eps, eps)).clamp_(0, 1).contiguous()

    def output_rgb(self, x: Tensor) -> np.ndarray:
        """``output(x)`` as the uint8 pixels that are written and judged."""
        with torch.no_grad():
            return jpeg.to_uint8(self.output(x))

    def judge(self, rgbs: Sequence[np.ndarray]) -> Tensor:
        """Victim outputs on each output's uint8 pixels after the JPEG re-encode."""
        return seen_outputs(self.victim, self.backend, rgbs, jpeg_condition(self.config.jpeg_quality))

    def _admit(
        self, indexed: Sequence[tuple[int, tuple[Tensor, Tensor, Tensor]]]
    ) -> tuple[list[_Item], list[tuple[_Item, Verdict]]]:
        """Baseline verdicts and attack targets for newly admitted (centre, original, init).

        Returns the items to attack and those that leave at once with 0 steps: their start
        already protects after JPEG (an amortised protector's init, say), or the budget is 0.
        The start is judged only if it is not the centre (given init, random start): the
        centre's verdict is the baseline ``before``, already taken.
        """
        items: list[_Item] = []
        finished: list[tuple[_Item, Verdict]] = []
        for geometry, group in by_geometry(indexed, self.victim, lambda p: p[1][0]).items():
            unattacked = [self.output_rgb(start) for _, (start, _, _) in group]
            before = self.judge(unattacked)
            clean = before
            if self.victim.needs_clean_outputs:
                clean = outputs_of(self.victim, self.backend, [orig for _, (_, orig, _) in group])
            targets, alone = baseline(self.victim, clean, before)
            before_ok = self.victim.is_protected(before, targets)
            # Where each photo starts, and its output pixels: the centre's are the un-attacked
            # ones already judged; a given init or a random start is judged now.
            xs, rgbs, moved = [], list(unattacked), []
            for row, (index, (start, _, init)) in enumerate(group):
                x = init
                if self.config.random_start:
                    gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + index)
                    x = x + (torch.rand(x.shape, generator=gen) * 2 - 1) * self.config.eps
                if x is start:
                    # A contiguous copy: the fused step updates x in place as one flat array,
                    # and start is the caller's.
                    xs.append(start.clone(memory_format=torch.contiguous_format))
                else:
                    xs.append(self._project(x, start))
                    rgbs[row] = self.output_rgb(xs[row])
                    moved.append(row)
            now = before.clone()
            if moved:
                now[moved] = self.judge([rgbs[row] for row in moved])
            now_verdicts = verdicts(self.victim, now, targets)
            for row, (index, (start, _, _)) in enumerate(group):
                item = _Item(
                    index=index,
                    start=start,
                    x=xs[row],
                    target=targets[row],
                    before=Verdict(before[row : row + 1], bool(before_ok[row])),
                    jpeg_alone=bool(alone[row]),
                    geometry=geometry,
                    unattacked=unattacked[row],
                )
                if now_verdicts[row].protected or self.config.steps == 0:
                    item.rgb = rgbs[row]
                    finished.append((item, now_verdicts[row]))
                else:
                    items.append(item)
        return items, finished

    # -- the loop -----------------------------------------------------------------------------
    def run(
        self,
        images: Iterable[Tensor],
        originals: Iterable[Tensor] | None = None,
        inits: Iterable[Tensor] | None = None,
    ) -> Iterator[AttackResult]:
        """Attack every image; yields results as photos finish (not in input order).

        ``images`` are the centres of the eps-balls; ``originals`` (default: the same) are the
        photos whose verdict must change; ``inits`` (default: the centres) are where the
        iterations start, e.g. an amortised protector's output inside the ball; given inits are
        judged after JPEG on admission, and those that already protect take no step.  All are
        consumed lazily, only as places in the batch free up, so a stream of any length is
        attacked in bounded memory.  ``AttackResult.index`` is the position in the stream.
        """
        more_originals = None if originals is None else iter(originals)
        more_inits = None if inits is None else iter(inits)

        def triples() -> Iterator[tuple[Tensor, Tensor, Tensor]]:
            for centre in images:
                original = centre if more_originals is None else next(more_originals)
                init = centre if more_inits is None else next(more_inits)
                yield centre, original, init

        queue = _Lookahead(enumerate(triples()))
        active: list[_Item] = []
        while queue or active:
            admitted, finished = self._admit(self._take(queue, active))
            active += admitted
            for group in by_geometry(active, self.victim, lambda it: it.x).values():
                finished += self._step_group(group)
            done = {id(it) for it, _ in finished}
            active = [it for it in active if id(it) not in done]
            for item, verdict in finished:
                yield AttackResult(
                    index=item.index,
                    rgb=item.rgb,
                    unattacked=item.unattacked,
                    steps=item.steps,
                    before=item.before,
                    after=verdict,
                    jpeg_alone=item.jpeg_alone,
                    seconds=time.perf_counter() - item.admitted,
                )

    def _take(
        self, queue: _Lookahead, active: list[_Item]
    ) -> list[tuple[int, tuple[Tensor, Tensor, Tensor]]]:
        """Pop photos from the queue while the batch has room (count and pixel budget)."""
        taken: list[tuple[int, tuple[Tensor, Tensor, Tensor]]] = []
        pixels = sum(it.pixels for it in active)
        while queue and len(active) + len(taken) < self.config.batch_size:
            index, triple = queue.peek()
            for name, im in zip(("image", "original", "init"), triple):
                check_image(im, f"{name} {index}")
            image = triple[0]
            size = image.shape[1] * image.shape[2]
            # A single photo larger than the budget still runs, alone.
            if (active or taken) and pixels + size > self.config.pixel_budget:
                break
            queue.pop()
            taken.append((index, triple))
            pixels += size
        return taken

    def _step_group(self, group: list[_Item]) -> list[tuple[_Item, Verdict]]:
        """One forward + gradient pass and one sign step for a same-geometry group, then the
        forward-only JPEG verdict on every stepped photo; returns the finished photos."""
        xs = [it.x.detach().requires_grad_(True) for it in group]
        with torch.enable_grad():
            batch = torch.stack([self.victim.preprocess(self.output(x)) for x in xs])
        targets = torch.stack([it.target for it in group])
        step = self.backend.step(batch.detach(), targets)
        torch.autograd.backward(list(batch), list(step.grad))
        cfg = self.config
        with torch.no_grad():
            for x, item in zip(xs, group):
                direction = step_direction(x.grad, item.velocity, cfg.blur_sigma, cfg.momentum)
                if cfg.momentum:
                    item.velocity = direction
                # Descend the loss, fused and in place: item.x shares x's storage, and the
                # graph that read it is gone after backward.
                alpha = cfg.step_size(item.steps)
                sign_step_project(x.detach(), direction, item.start, alpha, cfg.eps, out=item.x)
                item.steps += 1
        rgbs = [self.output_rgb(it.x) for it in group]
        finished = []
        for item, rgb, verdict in zip(group, rgbs, verdicts(self.victim, self.judge(rgbs), targets)):
            if verdict.protected or item.steps >= cfg.steps:
                item.rgb = rgb
                finished.append((item, verdict))
        return finished


class _Lookahead:
    """An iterator that can show its next item without consuming it."""

    def __init__(self, iterator: Iterator) -> None:
        self._it = iterator
        self._next: list = []

    def __bool__(self) -> bool:
        if not self._next:
            self._next = list(itertools.islice(self._it, 1))
        return bool(self._next)

    def peek(self):
        if not self:
            raise IndexError("peek on an exhausted queue")
        return self._next[0]

    def pop(self):
        item = self.peek()
        self._next.clear()
        return item
