"""Loading user-supplied checkpoints with errors that name the file and the reason."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A weights file that cannot be used, with the file and the reason."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def read_state_dict(path: Path, prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Read a torch checkpoint: a bare state dict, or a dict holding one under ``state_dict``.

    Keys lose ``prefix`` wherever it starts a path segment: DataParallel puts ``module.`` in
    front of every key when it wraps the whole model (the published Places365 checkpoints), or
    after the wrapped part's name when it wraps one part (NIMA's ``features.module.0.weight``).
    Loading is ``weights_only``: a checkpoint is data, never code to run.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(path, "the file is empty")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    # torch.load raises whatever its unpickler trips on for garbage input (IndexError,
    # UnpicklingError, RuntimeError, ...): every one of them means "not a checkpoint".
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(path, f"not a readable torch checkpoint ({exc})") from exc
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(path, "expected a state dict (or a dict with 'state_dict')")
    if not prefix:
        return dict(obj)
    return {k.removeprefix(prefix).replace("." + prefix, "."): v for k, v in obj.items()}


def required_weights(weights: Path | str | None, victim: str, what: str) -> Path:
    """The ``--weights`` file of a victim that needs one; a clear error naming what to give."""
    if weights is None:
        raise ValueError(f"{victim} needs --weights FILE: {what} (it cannot be downloaded here)")
    return Path(weights)


def load_into(model: nn.Module, path: Path, prefix: str = "module.") -> nn.Module:
    """Load ``path`` into ``model`` strictly, turning shape/key mismatches into a clear error."""
    state = read_state_dict(path, prefix)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {unexpected[0]})")
    if wrong:
        k = wrong[0]
        problems.append(
            f"{len(wrong)} keys of the wrong shape (first: {k}: file {tuple(state[k].shape)}, "
            f"model {tuple(expected[k].shape)})"
        )
    if problems:
        raise CheckpointError(path, f"not a {type(model).__name__} checkpoint: " + "; ".join(problems))
    model.load_state_dict(state)
    return model
