"""Batched I-FGSM with expectation over views, per-photo early stop on the panel verdict.

The loop keeps up to ``batch_size`` photos (and ``pixel_budget`` pixels) in flight.  Each
iteration, every photo:

* takes one gradient pass over a sample of ``views_per_step`` views of the panel, through
  their differentiable stand-ins (views not yet clear of the verdict by the stop margin come
  first, then a seeded draw of the others), plus ``jitter`` random off-panel channels; views
  already past the target add no gradient, so the worst views drive the step;
* takes a step along the blurred, momentum-summed gradient (:mod:`.direction`), a sign step or
  an RMS-scaled one, projected onto the eps-ball around its start over the whole frame;
* every ``check_every`` steps, is judged on the pixels of the written file with the real
  codecs and resizers (:mod:`.verdict`): the views not clear last time, then every view.  A
  photo clear under every view, or out of steps, leaves; its place is refilled.

With a differentiable ``transform`` (an enhancer: "attack through the enhancer") the victim sees
``transform(x)``, the gradient flows back to the input ``x``, and the output is
``transform(x_adv)``.  Verdicts are always against the *original* photo.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..backends.base import GradientBackend
from ..backends.convolutions import native_convolutions
from ..io import jpeg
from ..kernels.ifgsm_step import sign_step_project
from ..threat import Channel, Panel, View, resolve_panel
from ..victims.base import Victim, check_image
from .config import AttackConfig
from .direction import rms_step, step_direction
from .verdict import Baseline, PanelJudge, ViewVerdict, network_input, panel_states


# Above this many pixels a photo's gradient is taken one channel per backward pass: at 12 MP
# one channel's stand-in holds about 1 GiB of intermediates (docs/brisque-fast.md).
SEPARATE_CHANNELS_ABOVE = 2_000_000

Pairs = list[tuple[View, Tensor]]  # a photo's sampled views, each with its target
GradientPass = list[tuple[int, Pairs]]  # (photo's place in the batch, its pairs) per photo


def photo_seed(seed: int, rgb: np.ndarray) -> int:
    """The random draws' seed for one photo: from ``seed`` and the photo's pixels, not its place
    in the stream, so that a photo gets the same output alone, in any batch, in a service's
    request stream or on any Ray worker."""
    digest = hashlib.blake2b(rgb.tobytes(), digest_size=8, key=f"{seed}:{rgb.shape}".encode()).digest()
    return int.from_bytes(digest, "little") >> 1  # non-negative, as torch's manual_seed wants


def jitter_view(panel: Panel, rng: random.Random) -> tuple[int, View]:
    """A random off-panel view for a gradient sample: a downscale by 0.4-1 (bilinear or bicubic)
    then JPEG 65-95, read as a random panel view ``v`` reads (and aimed at its target)."""
    v = rng.randrange(len(panel.views))
    channel = Channel.parse(
        f"scale:{rng.uniform(0.4, 1.0):.3f}:{rng.choice(('bilinear', 'bicubic'))}+jpeg:{rng.randint(65, 95)}"
    )
    return v, View(channel, panel.views[v].reading)


class Idle:
    """The type of :data:`IDLE`."""

    def __repr__(self) -> str:
        return "IDLE"


# A stream item meaning "nothing to add now": the batch goes on with the photos it has and asks
# the stream again after the next step.  A service feeds the loop from its queue of requests
# this way without holding up the photos in flight.  It takes a place in the stream's numbering
# and must stand at the same place in every stream given to ``IFGSM.run``.
IDLE: Final = Idle()


@dataclass
class AttackResult:
    """The outcome for one photo: its pixels and a verdict under every view of the panel."""

    index: int
    rgb: np.ndarray  # (H, W, 3) uint8: the protected photo as it will be written
    unattacked: np.ndarray  # (H, W, 3) uint8: the output without the attack (fidelity reference)
    steps: int  # gradient steps spent
    views: list[ViewVerdict]  # one per view of the panel, in panel order
    headline: int  # the view whose outputs reports show as before/after
    seconds: float  # wall time from entering the batch to leaving it (the batch is shared)

    @property
    def states(self) -> dict[str, bool]:
        """protected / already / alone / win over the whole panel."""
        return panel_states(self.views)

    @property
    def protected(self) -> bool:
        return self.states["protected"]

    @property
    def before(self) -> Verdict:
        """The headline view's verdict on the un-attacked output."""
        view = self.views[self.headline]
        return Verdict(view.before, view.alone or view.already)

    @property
    def after(self) -> Verdict:
        """The headline view's verdict on the protected photo."""
        view = self.views[self.headline]
        return Verdict(view.after, view.protected)


class Verdict(NamedTuple):
    """A victim's outputs on one photo under one view, and whether they count as protected."""

    outputs: Tensor  # (1, ...) scores or logits
    protected: bool


@dataclass
class _Item:
    index: int
    start: Tensor
    x: Tensor
    base: Baseline
    unattacked: np.ndarray
    failing: list[int]  # views that failed the last verdict
    steps: int = 0
    velocity: Tensor | None = None  # the momentum buffer (MI-FGSM), once a step is taken
    rng: random.Random = field(default_factory=random.Random)
    pixels: int = field(init=False)
    admitted: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.pixels = self.x.shape[1] * self.x.shape[2]


class IFGSM:
    """Iterative FGSM toward the victim's target under every view of a panel.

    Example:
        >>> attack = IFGSM(victim, backend, AttackConfig(panel="medium"))
        >>> for result in attack.run(images): ...
    """

    def __init__(
        self,
        victim: Victim,
        backend: GradientBackend,
        config: AttackConfig,
        transform: torch.nn.Module | None = None,
        panel: Panel | None = None,
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
        self.panel = panel or resolve_panel(config.panel, victim.deployment_readings, config.jpeg_quality)
        self.judge = PanelJudge(victim, backend, self.panel, config.written)
        self.headline = self.judge.headline(config.jpeg_quality)

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

    # -- admission ----------------------------------------------------------------------------
    def _admit(
        self, indexed: Sequence[tuple[int, tuple[Tensor, Tensor, Tensor]]]
    ) -> tuple[list[_Item], list[AttackResult]]:
        """Baselines for newly admitted (centre, original, init); returns the photos to attack
        and those that leave at once with 0 steps (their start already protects under every
        view, or the budget is 0)."""
        if not indexed:
            return [], []
        unattacked = [self.output_rgb(start) for _, (start, _, _) in indexed]
        originals = [jpeg.to_uint8(orig) for _, (_, orig, _) in indexed]
        bases = self.judge.baseline(originals, unattacked)
        items, finished = [], []
        for (index, (start, _, init)), rgb, base in zip(indexed, unattacked, bases):
            seed = photo_seed(self.config.seed, rgb)
            x = init
            if self.config.random_start:
                gen = torch.Generator().manual_seed(seed)
                x = x + (torch.rand(x.shape, generator=gen) * 2 - 1) * self.config.eps
            # A contiguous copy: the fused step updates x in place, and start is the caller's.
            x = start.clone(memory_format=torch.contiguous_format) if x is start else self._project(x, start)
            item = _Item(index, start, x, base, rgb, failing=[], rng=random.Random(seed))
            now = rgb if x is start or torch.equal(x, start) else self.output_rgb(x)
            # The un-attacked output was judged by the baseline; a moved start is judged now.
            verdicts = (
                [ViewVerdict(v.name, b, b, self._ok(b, t), a, al) for v, b, t, a, al in zip(
                    self.panel.views, base.before, base.targets, base.alone, base.already)]
                if now is rgb
                else self.judge.judge([now], [base])[0]
            )
            item.failing = [v for v, verdict in enumerate(verdicts) if not self._clear(verdict, base.targets[v])]
            if not item.failing or self.config.steps == 0:
                finished.append(self._result(item, now, verdicts))
            else:
                items.append(item)
        return items, finished

    def _ok(self, outputs: Tensor, target: Tensor) -> bool:
        return bool(self.victim.is_protected(outputs, target[None])[0])

    def _clear(self, verdict: ViewVerdict, target: Tensor) -> bool:
        """Protected under the view with the stop margin to spare."""
        return verdict.protected and bool(self.victim.clear_by(verdict.after, target[None], self.config.stop_margin)[0])

    def _result(self, item: _Item, rgb: np.ndarray, verdicts: list[ViewVerdict]) -> AttackResult:
        return AttackResult(
            index=item.index,
            rgb=rgb,
            unattacked=item.unattacked,
            steps=item.steps,
            views=verdicts,
            headline=self.headline,
            seconds=time.perf_counter() - item.admitted,
        )

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
        iterations start, e.g. an amortised protector's output inside the ball.  All are
        consumed lazily, only as places in the batch free up, so a stream of any length is
        attacked in bounded memory.  ``AttackResult.index`` is the position in the stream.
        A stream may yield :data:`IDLE` when it has nothing to add yet.
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
            if active:
                finished += self._step(active)
            done = {r.index for r in finished}
            active = [it for it in active if it.index not in done]
            yield from finished

    def _take(
        self, queue: _Lookahead, active: list[_Item]
    ) -> list[tuple[int, tuple[Tensor, Tensor, Tensor]]]:
        """Pop photos from the queue while the batch has room (count and pixel budget)."""
        taken: list[tuple[int, tuple[Tensor, Tensor, Tensor]]] = []
        pixels = sum(it.pixels for it in active)
        idle = False
        while len(active) + len(taken) < self.config.batch_size and queue:
            index, triple = queue.peek()
            if triple[0] is IDLE:
                queue.pop()
                # Nothing to add now: step the photos in flight.  An IDLE can be stale (read
                # while the batch was full), so the stream is asked once more first.
                if idle:
                    break
                idle = True
                continue
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

    def _views_for_step(self, item: _Item) -> Pairs:
        """(view, target) pairs for one photo's gradient: failing views first (a seeded draw if
        there are more than fit), then other panel views, then the random off-panel channels,
        each read like a panel view and aimed at that view's target."""
        k = self.config.views_per_step
        failing = list(item.failing)
        if len(failing) >= k:
            chosen = item.rng.sample(failing, k)
        else:
            others = [v for v in range(len(self.panel.views)) if v not in failing]
            chosen = failing + item.rng.sample(others, min(k - len(failing), len(others)))
        pairs = [(self.panel.views[v], item.base.targets[v]) for v in chosen]
        for _ in range(self.config.jitter):
            v, view = jitter_view(self.panel, item.rng)
            pairs.append((view, item.base.targets[v]))
        return pairs

    def _gradient_passes(self, items: list[_Item]) -> list[GradientPass]:
        """The step's backward passes, each a list of (photo, its (view, target) pairs): every
        photo's views in one pass, so that the victim batches them, except for a photo above
        ``SEPARATE_CHANNELS_ABOVE`` pixels, whose views go one channel per pass, so that one
        channel's full-resolution stand-in is alive at a time (the sum is the same gradient)."""
        together: GradientPass = []
        separate: list[GradientPass] = []
        for i, item in enumerate(items):
            pairs = self._views_for_step(item)
            if item.x.shape[-2] * item.x.shape[-1] <= SEPARATE_CHANNELS_ABOVE:
                together.append((i, pairs))
                continue
            by_channel: dict[Channel, Pairs] = {}
            for view, target in pairs:
                by_channel.setdefault(view.channel, []).append((view, target))
            separate += [[(i, channel_pairs)] for channel_pairs in by_channel.values()]
        return ([together] if together else []) + separate

    def _written(self, x: Tensor) -> Tensor:
        """The differentiable stand-in of the file written for ``x``, (1, 3, H, W): what every
        view's channel starts from.  Straight-through presets leave its JPEG out."""
        shared = self.output(x)[None]
        return shared if self.config.straight_through else self.judge.written.torch(shared)

    def _backward(self, gradient_pass: GradientPass, written: list[Tensor]) -> None:
        """One backward pass: the victim's input gradient on every view of the pass (grouped
        by input shape into batches), back through the views' stand-ins into the grads of
        ``written`` (leaves standing for each photo's written file)."""
        inputs: list[Tensor] = []
        aims: list[Tensor] = []  # the target of each network input
        with torch.enable_grad(), native_convolutions():
            for i, pairs in gradient_pass:
                shared = written[i]
                delivered: dict[object, Tensor] = {}
                for view, target in pairs:
                    if view.channel not in delivered:
                        delivered[view.channel] = shared if self.config.straight_through else view.channel.torch(shared)
                    inputs.append(network_input(self.victim, view.reading, delivered[view.channel][0]))
                    aims.append(target)
        groups: dict[tuple[int, ...], list[int]] = {}
        for r, x in enumerate(inputs):
            groups.setdefault(tuple(x.shape), []).append(r)
        grads: list[Tensor] = [torch.empty(0)] * len(inputs)
        for members in groups.values():
            batch = torch.stack([inputs[r] for r in members])
            targets = torch.stack([aims[r] for r in members])
            step = self.backend.step(batch.detach(), targets)
            # A view already past the target with its margin needs no more push.
            past = self.victim.past_target(step.outputs, targets).view(-1, *[1] * (step.grad.ndim - 1))
            for r, g in zip(members, step.grad.masked_fill(past, 0)):
                grads[r] = g
        # One backward pass for all groups: views of one photo share its channel stand-ins.
        with native_convolutions():
            torch.autograd.backward(inputs, grads)

    def _step(self, items: list[_Item]) -> list[AttackResult]:
        """One gradient pass over each photo's sampled views, one sign step each, then the
        panel verdict; returns the photos that finished."""
        xs = [it.x.detach().requires_grad_(True) for it in items]
        # The written file's stand-in is built once per photo and step, and each pass
        # back-propagates only to it: passes of a large photo share it, and the last backward
        # takes the sum on to x.  It is in the gradient because re-encodes near the written
        # quality (JPEG 85 of a JPEG-90 file) failed without it (docs/strength.md).
        with torch.enable_grad(), native_convolutions(self.transform is None):
            written = [self._written(x) for x in xs]
        leaves = [w.detach().requires_grad_(True) for w in written]
        for gradient_pass in self._gradient_passes(items):
            self._backward(gradient_pass, leaves)  # leaf.grad sums over the passes
        reached = [(w, leaf.grad) for w, leaf in zip(written, leaves) if leaf.grad is not None]
        if reached:
            with native_convolutions(self.transform is None):
                torch.autograd.backward(*map(list, zip(*reached)))
        cfg = self.config
        with torch.no_grad():
            for x, item in zip(xs, items):
                grad = x.grad if x.grad is not None else torch.zeros_like(x)
                direction = step_direction(grad, item.velocity, cfg.blur_sigma, cfg.momentum)
                if cfg.momentum:
                    item.velocity = direction
                alpha = cfg.step_size(item.steps)
                if cfg.step == "sign":
                    # Descend the loss, fused and in place: item.x shares x's storage.
                    sign_step_project(x.detach(), direction, item.start, alpha, cfg.eps, out=item.x)
                else:
                    item.x.copy_(self._project(item.x - rms_step(direction, alpha), item.start))
                item.steps += 1
        due = [it for it in items if it.steps % cfg.check_every == 0 or it.steps >= cfg.steps]
        return self._verdicts(due) if due else []

    def _verdicts(self, items: list[_Item]) -> list[AttackResult]:
        """Judge each stepped photo on its written pixels: the views that failed last time,
        then the other views once those pass (or the budget is spent)."""
        rgbs = [self.output_rgb(it.x) for it in items]
        checked = [list(it.failing) for it in items]
        partial = self.judge.judge(rgbs, [it.base for it in items], checked)
        finished, rest = [], []
        for i, (item, verdicts) in enumerate(zip(items, partial)):
            item.failing = [v for v, verdict in zip(checked[i], verdicts) if not self._clear(verdict, item.base.targets[v])]
            if not item.failing or item.steps >= self.config.steps:
                rest.append(i)
        others = [[v for v in range(len(self.panel.views)) if v not in checked[i]] for i in rest]
        judged = self.judge.judge([rgbs[i] for i in rest], [items[i].base for i in rest], others)
        for i, views, verdicts in zip(rest, others, judged):
            item = items[i]
            by_view = dict(zip(checked[i], partial[i])) | dict(zip(views, verdicts))
            full = [by_view[v] for v in range(len(self.panel.views))]
            item.failing = [v for v, verdict in enumerate(full) if not self._clear(verdict, item.base.targets[v])]
            if not item.failing or item.steps >= self.config.steps:
                finished.append(self._result(item, rgbs[i], full))
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
