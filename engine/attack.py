"""Batched I-FGSM with per-image early stop, judged after real JPEG re-encoding.

The loop keeps a batch of up to ``batch_size`` photos (and at most ``pixel_budget`` full-size
pixels) in flight.  Each step runs one forward + input-gradient pass per victim geometry,
then:

* a photo whose float verdict says "protected" is re-encoded as a real JPEG at
  ``jpeg_quality`` and judged again; if that holds, it leaves the batch at once;
* every other photo takes a sign step of ``alpha``, is projected onto the L-inf ball of
  radius ``eps`` around its start, and clamped to [0, 1].  By default the step follows the
  MI-FGSM momentum (a decaying sum of L1-normalised gradients), not the bare gradient: the
  classifier loss is clamped at ``-confidence``, and a photo whose float margin passed that
  floor while JPEG still undid it had a zero gradient and stood still for the rest of its
  budget (benchmarks/NOTES.md);
* freed places are refilled from the queue, so the batch stays full and no compute is spent
  on finished photos.

With a differentiable ``transform`` (an enhancer: the 2020 "attack through the enhancer" run),
the victim sees ``transform(x)``, the gradient flows back through it to the *input* ``x``, and
the output is ``transform(x_adv)``; the eps-ball is around the input.

The baseline for every verdict is the *original* photo (``originals``, by default the start
images): its clean top-1 and the verdict on the un-attacked output after JPEG must both be left
behind, and ``AttackResult.jpeg_alone`` records when re-encoding (and enhancement) alone already
changed the verdict, which is no win for the attack.

Why the JPEG check only on float-protected photos: the real encode/decode costs about as much
as a forward pass at full resolution, and a photo the float verdict rejects is (almost) never
protected after JPEG, which only adds noise on top.  The check is exact where it matters: a
photo leaves only on the verdict of the very bytes that will be written.  A photo that runs
out of steps is judged after JPEG too, so the reported verdict is always the re-encoded one.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from . import jpeg
from .backends.base import GradientBackend
from .kernels.ifgsm_step import sign_step_project
from .victims.base import Victim, check_image


@dataclass(frozen=True)
class AttackConfig:
    """I-FGSM parameters (the image range is [0, 1])."""

    eps: float = 8 / 255
    alpha: float = 1 / 255
    steps: int = 40
    jpeg_quality: int = 90
    batch_size: int = 8
    pixel_budget: int = 50_000_000
    random_start: bool = False
    seed: int = 0
    # MI-FGSM decay (0: plain I-FGSM).  0.5 reached 100% after JPEG on the bench photos where
    # plain I-FGSM got 97% (lite0 top-1) and 69% (top-5), in fewer gradient passes for lite0
    # and BRISQUE alike; 1.0 took more passes on BRISQUE (benchmarks/NOTES.md).
    momentum: float = 0.5
    # Step schedule: the first step is ``alpha_start``, falling geometrically to ``alpha``
    # over the first quarter of the budget (None: ``alpha`` throughout).
    alpha_start: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.eps <= 1:
            raise ValueError(f"eps must be in (0, 1], got {self.eps}")
        if not 0 < self.alpha <= self.eps:
            raise ValueError(f"alpha must be in (0, eps], got {self.alpha}")
        if self.alpha_start is not None and not self.alpha <= self.alpha_start <= self.eps:
            raise ValueError(f"alpha_start must be in [alpha, eps], got {self.alpha_start}")
        if self.momentum < 0:
            raise ValueError(f"momentum must be >= 0, got {self.momentum}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.batch_size < 1 or self.pixel_budget < 1:
            raise ValueError("batch_size and pixel_budget must be positive")

    def step_size(self, step: int) -> float:
        """The sign-step size of step ``step`` (0-based)."""
        if self.alpha_start is None:
            return self.alpha
        ramp = max(1, self.steps // 4)
        return self.alpha_start * (self.alpha / self.alpha_start) ** (min(step, ramp) / ramp)


@dataclass
class Verdict:
    """What the victim says of one photo, always after JPEG re-encoding."""

    outputs: Tensor  # victim outputs for this photo, shape (1, ...) or (1,)
    protected: bool


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

    # -- verdicts -----------------------------------------------------------------------------
    def _preprocess(self, images: Sequence[Tensor]) -> Tensor:
        return torch.stack([self.victim.preprocess(im) for im in images])

    def judge(self, inputs: Sequence[Tensor]) -> Tensor:
        """Victim outputs on the JPEG re-encode of each input's quantised output (same geometry)."""
        with torch.no_grad():
            seen = [
                jpeg.to_float(jpeg.roundtrip(self.output_rgb(x), self.config.jpeg_quality))
                for x in inputs
            ]
            return self.backend.outputs(self._preprocess(seen))

    def _admit(self, indexed: Sequence[tuple[int, tuple[Tensor, Tensor, Tensor]]]) -> list[_Item]:
        """Baseline verdicts and attack targets for newly admitted (centre, original, init)."""
        items: list[_Item] = []
        for geometry, group in _by_geometry(indexed, self.victim, key=lambda p: p[1][0]).items():
            starts = [start for _, (start, _, _) in group]
            with torch.no_grad():
                clean = self.backend.outputs(self._preprocess([orig for _, (_, orig, _) in group]))
            before = self.judge(starts)
            targets = self.victim.reference(clean, before)
            before_ok = self.victim.is_protected(before, targets)
            alone = self.victim.is_protected(before, self.victim.reference(clean, clean))
            for row, (index, (start, _, init)) in enumerate(group):
                x = init
                if self.config.random_start:
                    gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + index)
                    x = x + (torch.rand(x.shape, generator=gen) * 2 - 1) * self.config.eps
                x = self._project(x, start)
                items.append(
                    _Item(
                        index=index,
                        start=start,
                        x=x,
                        target=targets[row],
                        before=Verdict(before[row : row + 1], bool(before_ok[row])),
                        jpeg_alone=bool(alone[row]),
                        geometry=geometry,
                        unattacked=self.output_rgb(start),
                    )
                )
        return items

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
            admitted = self._admit(self._take(queue, active))
            finished = [] if more_inits is None else self._judge_inits(admitted)
            leaving = {id(it) for it, _ in finished}
            active += [it for it in admitted if id(it) not in leaving]
            for group in _by_geometry(active, self.victim, key=lambda it: it.x).values():
                finished += self._step_group(group)
            done = {id(it) for it, _ in finished}
            active = [it for it in active if id(it) not in done]
            for item, verdict in finished:
                yield AttackResult(
                    index=item.index,
                    rgb=self.output_rgb(item.x),
                    unattacked=item.unattacked,
                    steps=item.steps,
                    before=item.before,
                    after=verdict,
                    jpeg_alone=item.jpeg_alone,
                    seconds=time.perf_counter() - item.admitted,
                )

    def _judge_inits(self, items: list[_Item]) -> list[tuple[_Item, Verdict]]:
        """Admitted items whose given init already protects after JPEG: they leave with 0 steps.

        So do all of them with a budget of 0 steps, judged without a wasted gradient pass.
        """
        finished: list[tuple[_Item, Verdict]] = []
        for group in _by_geometry(items, self.victim, key=lambda it: it.x).values():
            judged = self.judge([it.x for it in group])
            ok = self.victim.is_protected(judged, torch.stack([it.target for it in group]))
            for row, item in enumerate(group):
                if ok[row] or self.config.steps == 0:
                    finished.append((item, Verdict(judged[row : row + 1], bool(ok[row]))))
        return finished

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
        """One forward + gradient pass for a same-geometry group; returns finished photos."""
        xs = [it.x.detach().requires_grad_(True) for it in group]
        with torch.enable_grad():
            batch = torch.stack([self.victim.preprocess(self.output(x)) for x in xs])
        targets = torch.stack([it.target for it in group])
        step = self.backend.step(batch.detach(), targets)
        float_ok = self.victim.is_protected(step.outputs, targets)

        finished: list[tuple[_Item, Verdict]] = []
        # Photos to verify through JPEG: float-protected ones, and ones out of steps.
        check = [i for i, it in enumerate(group) if float_ok[i] or it.steps >= self.config.steps]
        if check:
            judged = self.judge([group[i].x for i in check])
            ok = self.victim.is_protected(judged, targets[check])
            for row, i in enumerate(check):
                if ok[row] or group[i].steps >= self.config.steps:
                    finished.append((group[i], Verdict(judged[row : row + 1], bool(ok[row]))))
        done = {id(it) for it, _ in finished}
        keep = [i for i, it in enumerate(group) if id(it) not in done]
        if keep:
            torch.autograd.backward([batch[i] for i in keep], [step.grad[i] for i in keep])
            cfg = self.config
            with torch.no_grad():
                for i in keep:
                    item = group[i]
                    direction = self._direction(item, xs[i].grad)
                    # Descend the loss, fused and in place: item.x shares xs[i]'s storage, and
                    # the graph that read it is gone after backward.
                    alpha = cfg.step_size(item.steps)
                    sign_step_project(xs[i].detach(), direction, item.start, alpha, cfg.eps, out=item.x)
                    item.steps += 1
        return finished

    def _direction(self, item: _Item, grad: Tensor) -> Tensor:
        """What the sign step follows: the gradient, or with momentum the decaying sum of
        L1-normalised gradients (an all-zero gradient leaves the previous direction)."""
        mu = self.config.momentum
        if mu == 0:
            return grad
        # In place and without full-size temporaries: at 12 MP each one is 144 MB.
        l1 = float(torch.linalg.vector_norm(grad, 1)) / grad.numel()
        weight = 1 / max(l1, torch.finfo(grad.dtype).tiny)
        if item.velocity is None:
            item.velocity = grad.mul_(weight)  # this step's gradient is not needed again
        else:
            item.velocity.mul_(mu).add_(grad, alpha=weight)
        return item.velocity


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


def _by_geometry(items, victim: Victim, key) -> dict[tuple[int, int], list]:
    """Group items by the victim geometry of their image, keeping order."""
    groups: dict[tuple[int, int], list] = {}
    for item in items:
        image = key(item)
        groups.setdefault(victim.geometry(image.shape[1], image.shape[2]), []).append(item)
    return groups
