"""The HTTP service: ``POST /v1/protect``, health, readiness, metrics and the web page.

A request's photo is decoded and its output encoded in Starlette's thread pool with the same
code as ``camo-engine protect`` (:func:`camo_engine.io.load.load_bytes`,
:func:`camo_engine.pipeline.encode_result`); the attack runs on the batcher's worker thread.
Nothing is written to disk (multipart uploads are parsed in memory), and nothing of a photo,
its name or its metadata is logged.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..io import strict_json
from ..io.load import ImageLoadError, load_bytes
from ..io.write import pixels_to_protect
from ..pipeline import encode_result
from .limits import RequestError, body_too_large, load_error
from .metrics import CONTENT_TYPE, ServiceMetrics
from .options import OptionError, describe, parse_options
from .settings import ServeSettings
from .worker import Batcher, NotReady, QueueFull

log = logging.getLogger("camo_engine.serve")

MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}
SUFFIXES = {"jpeg": ".jpg", "png": ".png"}
# Fields of a request that shape the response, not the protection.
RESPONSE_FIELDS = ("report",)
STATIC = resources.files("camo_engine.serve").joinpath("static")


class _InMemoryParser(MultiPartParser):
    """Starlette's multipart parser, keeping uploads in memory (its default spools files over
    1 MB to a temporary file: a photo must never reach the disk).  The body is already bounded."""

    spool_max_size = 2**62


def create_app(settings: ServeSettings = ServeSettings()) -> Starlette:
    """The service for ``settings``; the models load on a worker thread at start-up
    (``/readyz`` says when), and shutting down drains the photos already accepted."""
    # Pillow logs EXIF values (owner names, serial numbers, GPS) at DEBUG as it reads them.
    logging.getLogger("PIL").setLevel(logging.INFO)
    metrics = ServiceMetrics()
    batcher = Batcher(settings, metrics)
    numbers = itertools.count(1)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        batcher.start()
        yield
        # The server stops taking connections and waits for open requests first (SIGTERM).
        await run_in_threadpool(batcher.stop)

    async def protect(request: Request) -> Response:
        started = time.perf_counter()
        number = next(numbers)
        try:
            response = await _protect(request)
        except RequestError as exc:
            response = exc.response()
            if exc.status >= 500:  # the status only: a reason may name the upload
                log.warning("camo-engine serve: request %d answered %d", number, exc.status)
        response.headers["X-Request-Id"] = str(number)
        metrics.requests.labels(str(response.status_code)).inc()
        metrics.latency.observe(time.perf_counter() - started)
        return response

    async def _protect(request: Request) -> Response:
        body = await _read_body(request, settings.max_body)
        filename, photo, fields = await _photo_and_fields(request, body)
        name = f"upload {filename!r}" if filename else "upload"
        answer = fields.pop("report", "image")
        if answer not in ("image", "json"):
            raise RequestError(422, f"option report: {answer!r} is not one of image, json")
        wants_json = answer == "json" or _accepts_json(request)
        try:
            options = parse_options(
                fields,
                victims=settings.victims,
                defaults=settings.defaults,
                batch_size=settings.batch_size,
                max_pixels=settings.max_pixels,
            )
        except OptionError as exc:
            raise RequestError(422, str(exc)) from None
        try:
            loaded = await run_in_threadpool(load_bytes, photo, settings.max_pixels, name)
        except ImageLoadError as exc:
            raise load_error(exc) from None
        rgb = pixels_to_protect(loaded, options.output.fmt)
        try:
            future = batcher.submit(options.batch_key, rgb)
        except QueueFull as exc:
            raise RequestError(503, str(exc), {"Retry-After": str(exc.retry_after)}) from None
        except NotReady as exc:
            raise RequestError(503, str(exc), {"Retry-After": "5"}) from None
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future), settings.timeout)
        except asyncio.TimeoutError:
            raise RequestError(
                504, f"{name}: no result within the request timeout of {settings.timeout:g} s"
            ) from None
        except Exception as exc:  # noqa: BLE001 - the attack failed on this photo alone
            raise RequestError(500, f"{name}: protecting failed: {type(exc).__name__}: {exc}") from None
        quality = options.config.jpeg_quality
        data, row = await run_in_threadpool(
            encode_result, name, loaded, result, options.victim, quality, options.output
        )
        if data is None:
            raise RequestError(500, row["error"])
        fmt = options.output.fmt
        height, width = loaded.size
        report = {k: v for k, v in row.items() if k not in ("input", "output")}
        report |= {"name": name, "width": width, "height": height, "bytes": len(data)}
        report |= {"media_type": MEDIA_TYPES[fmt], "download_name": _download_name(filename, fmt)}
        if wants_json:
            payload = {"report": report, "image": base64.b64encode(data).decode("ascii")}
            return Response(strict_json.dumps(payload), media_type="application/json")
        # Per-view verdicts are in the JSON report; headers carry views_protected and failed_views.
        headers = {
            f"X-Camo-{k.replace('_', '-').title()}": _header_value(v) for k, v in report.items() if k != "views"
        }
        headers["Content-Disposition"] = f'attachment; filename="{report["download_name"]}"'
        return Response(data, media_type=MEDIA_TYPES[fmt], headers=headers)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        if batcher.error is not None:
            return PlainTextResponse(f"models failed to load: {batcher.error}", 503)
        if batcher.stopping:
            return PlainTextResponse("shutting down", 503)
        if not batcher.ready.is_set():
            return PlainTextResponse("loading models", 503)
        return PlainTextResponse("ready")

    async def metrics_endpoint(request: Request) -> Response:
        metrics.queue_depth.set(batcher.queue_depth())
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def options_endpoint(request: Request) -> Response:
        return JSONResponse(
            {
                "fields": describe(settings.victims, settings.defaults),
                "limits": {
                    "max_body": settings.max_body,
                    "max_pixels": settings.max_pixels,
                    "timeout": settings.timeout,
                    "batch_size": settings.batch_size,
                    "max_queue": settings.max_queue,
                },
            }
        )

    async def index(request: Request) -> Response:
        return FileResponse(str(STATIC.joinpath("index.html")))

    routes = [
        Route("/", index),
        Route("/v1/protect", protect, methods=["POST"]),
        Route("/v1/options", options_endpoint),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past ``limit`` bytes: by its declared length before any is
    read, else as soon as a chunked body runs over."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    chunks, seen = [], 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _photo_and_fields(
    request: Request, body: bytes
) -> tuple[str | None, bytes, dict[str, str]]:
    """(file name, photo bytes, option fields): a multipart upload's one file part and its
    other fields, or the raw body; query fields in both cases.  A field given twice is an
    error."""
    fields: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        _add_field(fields, key, value)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return None, body, fields

    async def once() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await _InMemoryParser(request.headers, once(), max_files=1, max_fields=64).parse()
    except MultiPartException as exc:
        raise RequestError(400, f"bad multipart body: {exc.message}") from None
    files = [(key, value) for key, value in form.multi_items() if isinstance(value, UploadFile)]
    for key, value in form.multi_items():
        if not isinstance(value, UploadFile):
            _add_field(fields, key, value)
    if not files:
        raise RequestError(422, "multipart body without a file part: send the photo as a file")
    _, upload = files[0]
    photo = await upload.read()
    return upload.filename or None, photo, fields


def _add_field(fields: dict[str, str], key: str, value: str) -> None:
    name = key.replace("_", "-")
    if name in fields:
        raise RequestError(422, f"option {name} is given twice")
    fields[name] = value


def _accepts_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "image/" not in accept


def _header_value(value: Any) -> str:
    """A report value as an ASCII header value: lists joined by "; " as in report.csv."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list):
        text = "; ".join(map(str, value))
    else:
        text = str(value)
    return text.encode("ascii", "backslashreplace").decode("ascii").replace("\n", " ")


def _download_name(filename: str | None, fmt: str) -> str:
    """``<stem>-protected.jpg`` from an upload's file name (ASCII letters, digits, ``._-``)."""
    stem = (filename or "photo").replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:80].strip("._") or "photo"
    return f"{stem}-protected{SUFFIXES[fmt]}"
