"""``camo-engine victims`` and ``camo-engine enhancers``: what can be attacked and enhanced."""

from __future__ import annotations

from .console import stdout
from .tables import fitted


def victims() -> None:
    """List the victims, what each needs and where its weights come from."""
    from ..victims import REGISTRY

    rows = [[e.info.name, e.info.task, e.info.needs, e.info.weights] for e in REGISTRY.values()]
    stdout.print(fitted(stdout, "victims", ["name", "task", "needs", "weights"], rows, "left"))


def enhancers() -> None:
    """List the enhancers, whether each is differentiable (usable with --through)."""
    from ..enhance import REGISTRY

    rows = [[i.name, "yes" if i.differentiable else "no", i.description] for i in REGISTRY.values()]
    stdout.print(fitted(stdout, "enhancers", ["name", "differentiable", "what it does"], rows, "left"))
