"""``camo-engine victims`` and ``camo-engine enhancers``: what can be attacked and enhanced."""

from __future__ import annotations

from rich.table import Table

from .console import stdout


def victims() -> None:
    """List the victims, what each needs and where its weights come from."""
    from ..victims import REGISTRY

    table = Table(title="victims")
    for column in ("name", "task", "needs", "weights"):
        table.add_column(column)
    for entry in REGISTRY.values():
        info = entry.info
        table.add_row(info.name, info.task, info.needs, info.weights)
    stdout.print(table)


def enhancers() -> None:
    """List the enhancers, whether each is differentiable (usable with --through)."""
    from ..enhance import REGISTRY

    table = Table(title="enhancers")
    for column in ("name", "differentiable", "what it does"):
        table.add_column(column)
    for info in REGISTRY.values():
        table.add_row(info.name, "yes" if info.differentiable else "no", info.description)
    stdout.print(table)
