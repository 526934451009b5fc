"""A real ``camo-engine serve`` app on uvicorn, in a thread of the test process, on loopback.

In-process so that tests can patch the engine (a photo the attack fails on) and capture the
logs; a real server (not a mock transport) so that bodies, headers and timeouts are HTTP's.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import uvicorn
from PIL import Image

from camo_engine.serve import ServeSettings, create_app


@contextmanager
def running(settings: ServeSettings, ready_within: float = 300) -> Iterator[tuple[str, object]]:
    """Yield (base URL, app) once ``/readyz`` says the models are loaded; stop on exit."""
    app = create_app(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # log_config=None: uvicorn's records reach the root logger, so caplog sees them.
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="info"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, ready_within)
        yield base, app
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()


def wait_ready(base: str, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{base} was not ready within {within} s")


def encoded(rgb: np.ndarray, fmt: str = "PNG", **params: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **params)
    return buf.getvalue()
