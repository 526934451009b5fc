"""Batched I-FGSM with per-image early stop, judged after real JPEG re-encoding.

The loop keeps a batch of up to ``batch_size`` photos (and at most ``pixel_budget`` full-size
pixels) in flight.  Each iteration runs one forward + input-gradient pass per victim geometry,
then:

* every photo takes a sign step of ``alpha``, is projected onto the L-inf ball of radius
  ``eps`` around its start, and clamped to [0, 1].  By default the step follows the gradient
  blurred by a small Gaussian (TI-FGSM: JPEG removes less of a smooth perturbation) and
  summed into the MI-FGSM momentum (a decaying sum of L1-normalised gradients).  Momentum
  because the classifier loss is clamped at ``-confidence``: a photo whose float margin passed
  that floor while JPEG still undid it had a zero gradient and stood still for the rest of its
  budget (benchmarks/NOTES.md);
* every stepped photo is re-encoded as a real JPEG at ``jpeg_quality`` and judged by a
  forward-only pass; a photo that is protected, or out of steps, leaves the batch at once;
* freed places are refilled from the queue, so the batch stays full and no compute is spent
  on finished photos.

With a differentiable ``transform`` (an enhancer: the 2020 "attack through the enhancer" run),
the victim sees ``transform(x)``, the gradient flows back through it to the *input* ``x``, and
the output is ``transform(x_adv)``; the eps-ball is around the input.

The baseline for every verdict is the *original* photo (``originals``, by default the start
images): its clean top-1 and the verdict on the un-attacked output after JPEG must both be left
behind, and ``AttackResult.jpeg_alone`` records when re-encoding (and enhancement) alone already
changed the verdict, which is no win for the attack.

Why a forward-only JPEG verdict after every step, and no float verdict: the float verdict came
with the gradient pass, so the pass that found a photo protected also paid for a backward that
was thrown away, and the JPEG check came on top.  With momentum most photos need one or two
steps, so that wasted pass was a third of the work; the forward-only verdict costs about a third
of a gradient pass and is the honest one (the very bytes that will be written).  A photo whose
un-attacked start (or given init) already protects leaves with 0 steps, judged on admission.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from kornia.filters import gaussian_blur2d
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
    # Gaussian blur (sigma in pixels, 0: off) of the gradient before it sets the step, as in
    # TI-FGSM: a smoother perturbation is less of what JPEG removes.  sigma 1 took BRISQUE from
    # 3.41 to 2.69 steps per photo at the same PSNR, and left EfficientNet-Lite0 at 1.3 steps
    # (benchmarks/NOTES.md).
    blur_sigma: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.eps <= 1:
            raise ValueError(f"eps must be in (0, 1], got {self.eps}")
        if not 0 < self.alpha <= self.eps:
            raise ValueError(f"alpha must be in (0, eps], got {self.alpha}")
        if self.alpha_start is not None and not self.alpha <= self.alpha_start <= self.eps:
            raise ValueError(f"alpha_start must be in [alpha, eps], got {self.alpha_start}")
        if self.momentum < 0:
            raise ValueError(f"momentum must be >= 0, got {self.momentum}")
        if self.blur_sigma < 0:
            raise ValueError(f"blur_sigma must be >= 0, got {self.blur_sigma}")
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

    # -- verdicts -----------------------------------------------------------------------------
    def _preprocess(self, images: Sequence[Tensor]) -> Tensor:
        return torch.stack([self.victim.preprocess(im) for im in images])

    def judge(self, rgbs: Sequence[np.ndarray]) -> Tensor:
        """Victim outputs on the JPEG re-encode of each output's uint8 pixels (same geometry)."""
        with torch.no_grad():
            seen = [jpeg.to_float(jpeg.roundtrip(rgb, self.config.jpeg_quality)) for rgb in rgbs]
            return self.backend.outputs(self._preprocess(seen))

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
        for geometry, group in _by_geometry(indexed, self.victim, key=lambda p: p[1][0]).items():
            unattacked = [self.output_rgb(start) for _, (start, _, _) in group]
            before = self.judge(unattacked)
            clean = before
            if self.victim.needs_clean_outputs:
                with torch.no_grad():
                    originals = self._preprocess([orig for _, (_, orig, _) in group])
                    clean = self.backend.outputs(originals)
            targets = self.victim.reference(clean, before)
            before_ok = self.victim.is_protected(before, targets)
            alone = self.victim.is_protected(before, self.victim.reference(clean, clean))
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
            now_ok = self.victim.is_protected(now, targets)
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
                if now_ok[row] or self.config.steps == 0:
                    item.rgb = rgbs[row]
                    finished.append((item, Verdict(now[row : row + 1], bool(now_ok[row]))))
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
            for group in _by_geometry(active, self.victim, key=lambda it: it.x).values():
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
                direction = self._direction(item, x.grad)
                # Descend the loss, fused and in place: item.x shares x's storage, and the
                # graph that read it is gone after backward.
                alpha = cfg.step_size(item.steps)
                sign_step_project(x.detach(), direction, item.start, alpha, cfg.eps, out=item.x)
                item.steps += 1
        rgbs = [self.output_rgb(it.x) for it in group]
        judged = self.judge(rgbs)
        ok = self.victim.is_protected(judged, targets)
        finished = []
        for row, item in enumerate(group):
            if ok[row] or item.steps >= cfg.steps:
                item.rgb = rgbs[row]
                finished.append((item, Verdict(judged[row : row + 1], bool(ok[row]))))
        return finished

    def _direction(self, item: _Item, grad: Tensor) -> Tensor:
        """What the sign step follows: the (blurred) gradient, or with momentum the decaying sum
        of L1-normalised gradients (an all-zero gradient leaves the previous direction)."""
        sigma = self.config.blur_sigma
        if sigma > 0:
            size = 2 * math.ceil(2 * sigma) + 1
            # Replicated borders: a reflected pad needs the photo wider than the kernel (1x1 works).
            grad = gaussian_blur2d(
                grad[None], (size, size), (sigma, sigma), border_type="replicate"
            )[0].contiguous()
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
