"""Views and panels: the threat model as data.

A *view* is a channel (what the platform does to the photo) followed by a reading (how a
model deployment prepares it).  A *panel* is a named list of views; a photo is protected only
when it is protected under every view of the panel, each judged against the original seen
through the same view.

Built-in panels: ``low`` (the victim's own reading after the JPEG re-encode, the fastest),
``medium`` (the default) and ``high``.  ``medium`` and ``high`` pair their channels with every
reading the victim's deployments use (``Victim.deployment_readings``).  A panel file (TOML or
JSON) gives ``name`` and either ``views = [{channel = "...", reading = "..."}, ...]`` or
``channels = [...]`` with optional ``readings = [...]`` (default: the victim's deployments).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .channels import Channel
from .readings import Reading

# What platforms do to a shared photo, by strength of the threat.
MEDIUM_CHANNELS = ("none", "jpeg:90", "jpeg:75", "long:1080+jpeg:85", "scale:0.5+jpeg:85")
HIGH_CHANNELS = MEDIUM_CHANNELS + ("jpeg:65", "long:640+jpeg:80", "webp:80", "scale:0.5:bicubic+jpeg:70")
BUILTIN = ("low", "medium", "high")


@dataclass(frozen=True)
class View:
    """A channel followed by a reading."""

    channel: Channel
    reading: Reading

    @property
    def name(self) -> str:
        return f"{self.channel.name}|{self.reading.name}"

    @classmethod
    def parse(cls, channel: str, reading: str = "own") -> View:
        return cls(Channel.parse(channel), Reading.parse(reading))


@dataclass(frozen=True)
class Panel:
    """A named list of views (order kept: reports list them so)."""

    name: str
    views: tuple[View, ...]

    def __post_init__(self) -> None:
        if not self.views:
            raise ValueError(f"panel {self.name!r} has no views")
        names = [v.name for v in self.views]
        if len(set(names)) != len(names):
            raise ValueError(f"panel {self.name!r} lists a view twice")

    @property
    def channels(self) -> tuple[Channel, ...]:
        """The distinct channels, in order (each is applied once per photo)."""
        return tuple(dict.fromkeys(v.channel for v in self.views))


def product(name: str, channels: Sequence[str], readings: Sequence[str]) -> Panel:
    """Every channel paired with every reading."""
    return Panel(name, tuple(View.parse(c, r) for c in channels for r in readings))


def builtin_panel(name: str, readings: Sequence[str], jpeg_quality: int = 90) -> Panel:
    """``low``, ``medium`` or ``high`` for a victim whose deployments read with ``readings``."""
    if name == "low":
        return product("low", (f"jpeg:{jpeg_quality}",), ("own",))
    if name == "medium":
        return product("medium", MEDIUM_CHANNELS, readings)
    if name == "high":
        return product("high", HIGH_CHANNELS, readings)
    raise ValueError(f"unknown panel {name!r}; built in: {', '.join(BUILTIN)}, or a .toml/.json file")


def load_panel(path: Path | str, readings: Sequence[str]) -> Panel:
    """A panel from a TOML or JSON file; errors name the file and what is wrong."""
    path = Path(path)
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise ValueError(f"panel file {path}: {exc}") from exc
    try:
        name = str(data.get("name", path.stem))
        if "views" in data:
            views = tuple(View.parse(v["channel"], v.get("reading", "own")) for v in data["views"])
            return Panel(name, views)
        if "channels" in data:
            return product(name, data["channels"], data.get("readings", readings))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"panel file {path}: {exc}") from exc
    raise ValueError(f"panel file {path}: give 'views' or 'channels'")


def resolve_panel(spec: str | Panel, readings: Sequence[str], jpeg_quality: int = 90) -> Panel:
    """A panel from a built-in name, a file path, or a :class:`Panel` as is."""
    if isinstance(spec, Panel):
        return spec
    if spec in BUILTIN:
        return builtin_panel(spec, readings, jpeg_quality)
    if Path(spec).suffix.lower() in (".toml", ".json"):
        return load_panel(spec, readings)
    return builtin_panel(spec, readings, jpeg_quality)
