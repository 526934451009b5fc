"""``camo-engine serve``: protect photos over HTTP, with photos of concurrent requests attacked
in the same batch, and a web page to try it.

:func:`create_app` builds the Starlette app (run it with uvicorn); :mod:`.worker` is the
cross-request batching, :mod:`.options` the request options, :mod:`.limits` the errors,
:mod:`.metrics` the Prometheus metrics and ``static/`` the page.  Needs the ``serve`` extra.
"""

from .app import create_app
from .settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
