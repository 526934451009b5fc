"""Which CPU kernels run the engine's convolutions, and the lock that keeps the choice
thread-safe (``torch.backends.mkldnn.enabled`` is one flag for the whole process)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

# Held while the stand-ins run on ATen's kernels, and by TorchBackend around the victim's
# network, so that concurrent attacks (threads of one process) get the same bits as one alone.
CONVOLUTION_LOCK = threading.RLock()


@contextlib.contextmanager
def native_convolutions(enabled: bool = True) -> Iterator[None]:
    """Run the stand-ins' convolutions on ATen's own CPU kernels instead of oneDNN's.

    The stand-ins blur one channel at a time (antialiased resizes, the JPEG's chroma
    subsampling), and oneDNN's backward of such a convolution is several times slower than
    ATen's (benchmarks/NOTES.md).  Only the stand-ins run inside: the victim's network, and
    an enhancer attacked through, keep oneDNN.
    """
    if not enabled:
        yield
        return
    # The flag is process-wide: hold the lock while it is off, so that no other thread's victim
    # network (TorchBackend takes the same lock) runs on ATen's kernels meanwhile, and no
    # overlapping context restores it early or leaves it off.
    with CONVOLUTION_LOCK:
        before = torch.backends.mkldnn.enabled
        # Set alone: torch.backends.mkldnn.flags() also resets TF32 and warns on every call.
        torch.backends.mkldnn.enabled = False
        try:
            yield
        finally:
            torch.backends.mkldnn.enabled = before


