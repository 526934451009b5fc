"""``camo-engine serve``: the HTTP service and its web page on uvicorn (the ``serve`` extra)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .console import stderr as console
from .options import (
    BackendOpt,
    BatchOpt,
    EnhanceOpt,
    FallbackOpt,
    OnnxCacheOpt,
    PrecisionOpt,
    ProvidersOpt,
    ThroughOpt,
    allow_pixels,
    backend_options,
)


def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    victim: Annotated[Optional[list[str]], typer.Option("--victim", "-v", help="Victim to load at start-up (repeat for several; the first is a request's default).")] = None,
    set_default: Annotated[Optional[list[str]], typer.Option("--set", help="A request option's default, NAME=VALUE (e.g. steps=10); names as `protect`'s options.")] = None,
    batch_size: BatchOpt = 8,
    max_queue: Annotated[int, typer.Option(help="Photos that may wait for a place in the batch; more get 503 with Retry-After.")] = 32,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body in MiB; larger gets 413.")] = 50.0,
    max_pixels: Annotated[Optional[int], typer.Option(help="Refuse images larger than this many pixels (decompression bombs): 422.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds a request may wait for its photo once queued; then 504.")] = 300.0,
    backend: BackendOpt = "torch",
    precision: PrecisionOpt = "fp32",
    providers: ProvidersOpt = None,
    provider_fallback: FallbackOpt = False,
    onnx_cache: OnnxCacheOpt = None,
    enhance: EnhanceOpt = None,
    through: ThroughOpt = False,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Serve POST /v1/protect and the web page at /; SIGTERM drains the requests in flight."""
    try:
        import uvicorn

        from ..io.load import DEFAULT_MAX_PIXELS
        from ..serve import ServeSettings, create_app
        from ..serve.options import OptionError, parse_options
    except ImportError as exc:
        console.print(f"[red]camo-engine serve needs the serve extra (pip install 'camo-engine[serve]'): {exc}")
        raise typer.Exit(2) from exc
    try:
        defaults = dict(_pair(text) for text in set_default or [])
        settings = ServeSettings(
            victims=tuple(victim or ["brisque"]),
            batch_size=batch_size,
            max_queue=max_queue,
            max_body=int(max_body_mb * 2**20),
            max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
            timeout=timeout,
            backend=backend,
            backend_options=backend_options(backend, precision, providers, provider_fallback, onnx_cache),
            enhance=enhance,
            through=through,
            defaults=defaults,
        )
        # Bad defaults fail now, not on every request.
        parse_options({}, victims=settings.victims, defaults=defaults, max_pixels=settings.max_pixels)
    except (ValueError, OptionError) as exc:
        console.print(f"[red]camo-engine: {exc}")
        raise typer.Exit(2) from exc
    allow_pixels(max_pixels)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValueError(f"--set takes NAME=VALUE, got {text!r}")
    return name.strip().replace("_", "-"), value.strip()
