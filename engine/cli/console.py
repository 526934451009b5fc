"""The command line's two consoles: results to stdout, progress and errors to stderr."""

from rich.console import Console

stdout = Console()
stderr = Console(stderr=True)
