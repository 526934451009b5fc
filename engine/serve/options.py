"""A request's protect options: the one table of names, parsers and where each value goes.

Names are the ``camo-engine protect`` command's own (``jpeg-quality`` for ``--jpeg-quality``),
and so are the defaults: the strength preset (``medium``) sets the attack, the library's
dataclasses the rest (:class:`~camo_engine.attack.AttackConfig`,
:class:`~camo_engine.pipeline.OutputOptions`), exactly as ``protect`` builds them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..attack import STRENGTHS, AttackConfig, strength_config
from ..attack.config import parse_level
from ..io.write import MetadataPolicy
from ..pipeline import OutputOptions
from ..threat.panels import BUILTIN

DEFAULT_STRENGTH = "medium"


class OptionError(ValueError):
    """A request option that is unknown or has a bad value (HTTP 422)."""


def parse_bool(text: str) -> bool:
    """``true/false``, ``1/0``, ``yes/no``, ``on/off`` (an HTML checkbox sends ``on``)."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"{text!r} is not one of {', '.join(allowed)}")
        return text

    return parse


@dataclass(frozen=True)
class Field:
    """One request option: ``goes_to`` says what it configures (the victim, the strength, an
    ``AttackConfig`` field or how the output is written) and ``param`` its keyword there."""

    name: str
    parse: Callable[[str], Any]
    goes_to: Literal["victim", "strength", "config", "output"]
    param: str
    help: str
    choices: tuple[str, ...] = ()


FIELDS: tuple[Field, ...] = (
    Field("victim", str, "victim", "victim", "victim to fool (one of the service's loaded victims)"),
    Field("strength", _choice(*STRENGTHS), "strength", "strength", "preset: panel of views, margin, eps, steps", STRENGTHS),
    # Built-in panels only: a request must not make the service read a file of its choosing.
    Field("panel", _choice(*BUILTIN), "config", "panel", "views the photo must hold under", BUILTIN),
    Field("views-per-step", int, "config", "views_per_step", "panel views sampled per gradient step"),
    Field("eps", parse_level, "config", "eps", "L-inf radius of the perturbation, e.g. 8/255"),
    Field("alpha", parse_level, "config", "alpha", "step size, e.g. 1/255"),
    Field("alpha-start", parse_level, "config", "alpha_start", "a larger first step, e.g. 2/255"),
    Field("momentum", float, "config", "momentum", "MI-FGSM momentum (0: plain I-FGSM)"),
    Field("blur-sigma", float, "config", "blur_sigma", "Gaussian blur of the gradient, pixels"),
    Field("steps", int, "config", "steps", "maximum steps"),
    Field("jpeg-quality", int, "config", "jpeg_quality", "JPEG quality of the written photo"),
    Field("seed", int, "config", "seed", "seed; the same seed gives the same bytes"),
    Field("format", _choice("jpeg", "png"), "output", "fmt", "output format", ("jpeg", "png")),
    Field("keep-metadata", parse_bool, "output", "keep", "keep EXIF/XMP/IPTC except GPS"),
    Field("keep-gps", parse_bool, "output", "keep_gps", "with keep-metadata, keep GPS too"),
)
BY_NAME = {field.name: field for field in FIELDS}
# What a photo must share with others to be attacked in the same batch.
BatchKey = tuple[str, str, AttackConfig]


@dataclass(frozen=True)
class ProtectOptions:
    """What one request asks for."""

    victim: str
    strength: str
    config: AttackConfig
    output: OutputOptions

    @property
    def batch_key(self) -> BatchKey:
        return self.victim, self.strength, self.config


def parse_options(
    given: Mapping[str, str],
    *,
    victims: tuple[str, ...],
    defaults: Mapping[str, str] | None = None,
    batch_size: int = 8,
    max_pixels: int,
) -> ProtectOptions:
    """Options from a request's fields (``jpeg-quality`` or ``jpeg_quality``), over the
    service's ``defaults`` (``serve --set``), over ``protect``'s.  Raises :class:`OptionError`
    naming the option and the reason."""
    values: dict[str, Any] = {"victim": victims[0], "strength": DEFAULT_STRENGTH}
    for source in (defaults or {}, given):
        for raw_name, text in source.items():
            name = raw_name.replace("_", "-")
            field = BY_NAME.get(name)
            if field is None:
                raise OptionError(f"unknown option {raw_name!r}; known: {', '.join(BY_NAME)}")
            try:
                values[name] = field.parse(text)
            except ValueError as exc:
                raise OptionError(f"option {name}: {exc}") from None
    if values["victim"] not in victims:
        raise OptionError(f"option victim: {values['victim']!r} is not loaded here; loaded: {', '.join(victims)}")
    parts: dict[str, dict[str, Any]] = {"config": {}, "output": {}}
    for name, value in values.items():
        field = BY_NAME[name]
        if field.goes_to in parts:
            parts[field.goes_to][field.param] = value
    output = parts["output"]
    fmt = output.pop("fmt", "jpeg")
    try:
        config = strength_config(
            values["strength"], written_jpeg=fmt == "jpeg", batch_size=batch_size, **parts["config"]
        )
        metadata = MetadataPolicy(keep=output.pop("keep", False), keep_gps=output.pop("keep_gps", False))
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    return ProtectOptions(
        victim=values["victim"],
        strength=values["strength"],
        config=config,
        output=OutputOptions(fmt=fmt, metadata=metadata, max_pixels=max_pixels),
    )


def describe(victims: tuple[str, ...], defaults: Mapping[str, str]) -> list[dict[str, Any]]:
    """The fields as the web page and ``GET /v1/options`` show them, with their defaults: the
    service's (``serve --set``), else the victim list's first and the default strength's."""
    preset = strength_config(defaults.get("strength", DEFAULT_STRENGTH))
    implied = {"victim": victims[0], "strength": DEFAULT_STRENGTH, "format": "jpeg", "keep-metadata": False, "keep-gps": False}
    shown = []
    for f in FIELDS:
        default = defaults.get(f.name, implied.get(f.name, getattr(preset, f.param, None)))
        choices = list(victims) if f.name == "victim" else list(f.choices)
        shown.append({"name": f.name, "help": f.help, "default": default, "choices": choices})
    return shown
