"""Request limits and the errors a request can get, each with its HTTP status and reason."""

from __future__ import annotations

from starlette.responses import JSONResponse

from ..io.load import ImageLoadError


class RequestError(Exception):
    """A request that is answered with ``status`` and a JSON ``{"error": reason}``."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.reason}, self.status, headers=self.headers)


def body_too_large(limit: int) -> RequestError:
    return RequestError(413, f"request body over the limit of {limit} bytes ({limit / 2**20:g} MiB)")


def load_error(exc: ImageLoadError) -> RequestError:
    """415 for data in no image format this build reads, 422 for a damaged or refused image
    (truncated, corrupt, empty, over the pixel limit: a possible decompression bomb)."""
    return RequestError(415 if exc.unsupported else 422, f"{exc.path or 'upload'}: {exc.reason}")
