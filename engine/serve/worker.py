"""Cross-request batching: one worker thread owns the models and runs the attack loop, fed
from the queue of pending photos; each request waits on a future.

The loop (:meth:`camo_engine.attack.IFGSM.run`, through :func:`camo_engine.resilient.protect_each`)
asks for photos only when its batch has room: before its first step and after every step, as
photos finish.  The feed then hands over the next queued photo, or ``IDLE`` when the queue is
empty (the batch steps on with the photos it has), and the worker sleeps only when no photo is
in flight.  Photos from concurrent requests thus share gradient passes, and a finished photo's
place goes to the next request at once.

How long a photo waits for a place (nothing waits for the batch to fill up):

* the batch has room: until the current step ends (one gradient pass and one JPEG verdict of
  the photos in flight);
* the batch is full: until a photo in it finishes, at most ``steps`` steps;
* photos ahead of it in the queue: at most ``max_queue`` wait (a request beyond that gets 503
  with ``Retry-After``), so a photo waits at most about ``max_queue / batch_size`` photo-times;
* photos asking for other attack options (victim, eps, steps...) run in a batch of their own,
  first come first served: the head of the queue waits until the batch in flight drains;
* the per-request timeout caps all of it: a photo still queued at its deadline leaves the queue
  unattacked, and one already in the batch finishes but its answer is dropped.

One photo the attack fails on fails only its own request (``protect_each`` retries the rest of
its batch one by one).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor, nn

from ..attack import IDLE, STRENGTHS, Idle
from ..attack.strength import strength as strength_preset
from ..backends import GradientBackend, Step, make_backend
from ..enhance import parse_enhancers
from ..protector import Protected, Protector
from ..resilient import protect_each
from ..victims import Victim, load_victim
from .metrics import ServiceMetrics
from .options import BatchKey
from .settings import ServeSettings

log = logging.getLogger("camo_engine.serve")

# Protectors for this many distinct option sets are kept (each is cheap: the models are shared).
PROTECTOR_CACHE = 16


class NotReady(Exception):
    """The service cannot take photos now (loading, failed to load, shutting down): 503."""


class QueueFull(Exception):
    """The queue of waiting photos is full: 503 with ``Retry-After``."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(eq=False)
class PendingPhoto:
    key: BatchKey
    rgb: np.ndarray
    future: Future[Protected]


class _Observed:
    """A backend that counts the rows (network inputs) of each gradient pass for the metrics."""

    def __init__(self, backend: GradientBackend, metrics: ServiceMetrics) -> None:
        self._backend = backend
        self._metrics = metrics
        self.name = backend.name

    def outputs(self, batch: Tensor) -> Tensor:
        return self._backend.outputs(batch)

    def step(self, batch: Tensor, targets: Tensor) -> Step:
        self._metrics.pass_rows.observe(batch.shape[0])
        return self._backend.step(batch, targets)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


class Batcher:
    """The queue of pending photos and the worker thread that protects them."""

    def __init__(self, settings: ServeSettings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.ready = threading.Event()
        self.error: str | None = None  # why the models failed to load
        self._queue: deque[PendingPhoto] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._in_flight = 0  # touched by the worker thread only
        # Per (victim, strength): a strength sets the victim's margin, so each has its own copy.
        self._models: dict[tuple[str, str], tuple[Victim, GradientBackend]] = {}
        self._enhancer: nn.Module | None = None
        self._protectors: OrderedDict[BatchKey, Protector] = OrderedDict()
        self._photo_seconds = 1.0  # running mean of a photo's time in the batch (Retry-After)
        self._thread = threading.Thread(target=self._run, name="camo-engine-protector", daemon=True)

    # -- the request side ------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, key: BatchKey, rgb: np.ndarray) -> Future[Protected]:
        """Queue a photo; its future gets the result.  Raises NotReady or QueueFull."""
        if self.error is not None:
            raise NotReady(f"the models failed to load: {self.error}")
        if not self.ready.is_set():
            raise NotReady("the models are still loading")
        photo = PendingPhoto(key, rgb, Future())
        with self._cond:
            if self._stopping:
                raise NotReady("the service is shutting down")
            if len(self._queue) >= self.settings.max_queue:
                raise QueueFull(self._retry_after())
            self._queue.append(photo)
            self.metrics.queue_depth.set(len(self._queue))
            self._cond.notify()
        photo.future.add_done_callback(lambda f: f.cancelled() and self._forget(photo))
        return photo.future

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new photos, protect those already queued, then end the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def queue_depth(self) -> int:
        return len(self._queue)

    def _forget(self, photo: PendingPhoto) -> None:
        """Drop a photo whose request gave up while it was still queued."""
        with self._cond:
            try:
                self._queue.remove(photo)
            except ValueError:
                return
            self.metrics.queue_depth.set(len(self._queue))

    def _retry_after(self) -> int:
        batches = (len(self._queue) + self.settings.batch_size) / self.settings.batch_size
        return max(1, math.ceil(batches * self._photo_seconds))

    # -- the worker thread -----------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._load()
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and every request
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("camo-engine serve: loading the models failed: %s", self.error)
            return
        self.ready.set()
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return  # stopping, and everything queued is done
                key = self._queue[0].key
            try:
                protector = self._protector(key)
            except Exception as exc:  # noqa: BLE001 - options the library refused
                self._refuse_head(key, exc)
                continue
            for photo, outcome in protect_each(protector, self._feed(key)):
                self._finish(photo, outcome)

    def _load(self) -> None:
        started = time.perf_counter()
        options = dict(self.settings.backend_options)
        for name in self.settings.victims:
            for strength in STRENGTHS:
                victim = strength_preset(strength).apply_margin(load_victim(name))
                backend = make_backend(self.settings.backend, victim, **options)
                self._models[name, strength] = (victim, _Observed(backend, self.metrics))
        if self.settings.enhance:
            self._enhancer = parse_enhancers(self.settings.enhance)
        log.info(
            "camo-engine serve: loaded %s in %.1f s",
            ", ".join(self.settings.victims), time.perf_counter() - started,
        )

    def _protector(self, key: BatchKey) -> Protector:
        if key in self._protectors:
            self._protectors.move_to_end(key)
            return self._protectors[key]
        name, strength, config = key
        victim, backend = self._models[name, strength]
        protector = Protector(
            victim,
            config=config,
            backend=backend,
            enhance=self._enhancer,
            through=self.settings.through,
            strength=strength,
        )
        self._protectors[key] = protector
        if len(self._protectors) > PROTECTOR_CACHE:
            self._protectors.popitem(last=False)
        return protector

    def _refuse_head(self, key: BatchKey, exc: Exception) -> None:
        """Fail the queued photos at the head that share options the library refused."""
        with self._cond:
            refused = []
            while self._queue and self._queue[0].key == key:
                refused.append(self._queue.popleft())
            self.metrics.queue_depth.set(len(self._queue))
        for photo in refused:
            if photo.future.set_running_or_notify_cancel():
                photo.future.set_exception(exc)

    def _feed(self, key: BatchKey) -> Iterator[tuple[PendingPhoto, np.ndarray] | Idle]:
        """Queued photos with options ``key`` for the attack loop, IDLE while none is queued
        and photos are in flight; ends when none is in flight and the head needs other options
        (or the service stops and the queue is empty)."""
        while True:
            with self._cond:
                while not self._queue and not self._in_flight and not self._stopping:
                    self._cond.wait()
                photo = None
                if self._queue and self._queue[0].key == key:
                    photo = self._queue.popleft()
                    self.metrics.queue_depth.set(len(self._queue))
                elif not self._in_flight:
                    return
            if photo is None:
                yield IDLE
            elif photo.future.set_running_or_notify_cancel():  # else its request gave up
                self._in_flight += 1
                self.metrics.in_flight.set(self._in_flight)
                yield photo, photo.rgb

    def _finish(self, photo: PendingPhoto, outcome: Protected | Exception) -> None:
        self._in_flight -= 1
        self.metrics.in_flight.set(self._in_flight)
        if isinstance(outcome, Exception):
            self.metrics.photo_done("failed")
            photo.future.set_exception(outcome)
            return
        self.metrics.photo_done("protected" if outcome.protected else "not_protected")
        for view in outcome.views:
            self.metrics.view_done(view["view"], view["protected"])
        self._photo_seconds += 0.1 * (outcome.seconds - self._photo_seconds)
        photo.future.set_result(outcome)
