"""What a service is started with (``camo-engine serve`` options)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..io.load import DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class ServeSettings:
    """Start-up settings: the models to load, the batch, and the limits of a request.

    ``victims`` are loaded once at start-up, the first is a request's default.  ``defaults``
    set request options' defaults over the CLI's (``serve --set steps=10``).
    """

    victims: tuple[str, ...] = ("brisque",)
    batch_size: int = 8
    max_queue: int = 32  # photos waiting for a place in the batch; more get 503
    max_body: int = 50 * 2**20  # bytes of one request body; more get 413
    max_pixels: int = DEFAULT_MAX_PIXELS  # decoded size; more get 422 (decompression bomb)
    timeout: float = 300.0  # seconds one request may wait for its photo; then 504
    backend: str = "torch"
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    enhance: str | None = None
    through: bool = False
    defaults: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.victims:
            raise ValueError("give at least one victim to serve")
        for name in ("batch_size", "max_queue", "max_body", "max_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be positive, got {self.timeout}")
