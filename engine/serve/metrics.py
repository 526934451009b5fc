"""The service's Prometheus metrics, in a registry of its own (one per app, so tests and
several apps in one process never share counters)."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: F401 - re-exported

# Seconds: a small photo at a few steps takes well under a second, a 12-MP photo at the full
# budget minutes.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
# Every whole number up to 16 rows, so that small passes are known exactly.
PASS_BUCKETS = (*range(1, 17), 24, 32, 48, 64, 96, 128)


class ServiceMetrics:
    """Requests by status, latency, queue depth, rows per gradient pass, protected share,
    and each view's outcomes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "camo_requests", "POST /v1/protect requests by HTTP status", ["status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "camo_request_seconds", "POST /v1/protect latency (body read to response)",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.queue_depth = Gauge(
            "camo_queue_depth", "photos waiting for a place in the attack batch",
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "camo_photos_in_flight", "photos in the attack batch", registry=self.registry
        )
        self.pass_rows = Histogram(
            "camo_pass_rows",
            "network inputs per gradient pass: the views sampled for the photos in the batch, per input size",
            buckets=PASS_BUCKETS, registry=self.registry,
        )
        self.photos = Counter(
            "camo_photos", "finished photos by outcome (protected, not_protected, failed)",
            ["outcome"], registry=self.registry,
        )
        self.protected_share = Gauge(
            "camo_protected_share", "share of the finished (not failed) photos that are protected",
            registry=self.registry,
        )
        self.views = Counter(
            "camo_view_photos", "finished photos by view of the panel and outcome (protected, not_protected)",
            ["view", "outcome"], registry=self.registry,
        )
        self._finished = {"protected": 0, "not_protected": 0}
        self._lock = threading.Lock()

    def photo_done(self, outcome: str) -> None:
        """Count a finished photo: ``protected``, ``not_protected`` or ``failed``."""
        self.photos.labels(outcome).inc()
        with self._lock:
            if outcome in self._finished:
                self._finished[outcome] += 1
                total = sum(self._finished.values())
                self.protected_share.set(self._finished["protected"] / total)

    def view_done(self, view: str, protected: bool) -> None:
        """Count one view's verdict on a finished photo."""
        self.views.labels(view, "protected" if protected else "not_protected").inc()

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
