"""The ``camo-engine`` command line: a thin layer over :mod:`camo_engine`'s library API.

One module per command; shared option groups in :mod:`.options`, the consoles in :mod:`.console`.
"""

from __future__ import annotations

import typer

from .bench import bench_command
from .catalog import enhancers, victims
from .evaluate import evaluate_command
from .export import export
from .protect import protect
from .serve import serve_command
from .train import train_protector_command

app = typer.Typer(
    help="Protect photos before sharing: adversarial camouflage judged after JPEG re-encoding.",
    no_args_is_help=True,
    add_completion=False,
)
# In this order, so that `--help` lists the main job first.
app.command()(protect)
app.command()(victims)
app.command()(export)
app.command()(enhancers)
app.command("evaluate")(evaluate_command)
app.command("bench")(bench_command)
app.command("train-protector")(train_protector_command)
app.command("serve")(serve_command)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="camo-engine")


__all__ = ["app", "main", "protect"]
