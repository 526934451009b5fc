"""The threat model as data: channels (what the platform does to a photo), readings (how a
model deployment prepares it), views (a channel then a reading) and panels (named lists of
views that a protected photo must hold under)."""

from .channels import Channel, Step, round_ste
from .panels import BUILTIN, Panel, View, builtin_panel, load_panel, resolve_panel
from .readings import Reading

__all__ = [
    "BUILTIN",
    "Channel",
    "Panel",
    "Reading",
    "Step",
    "View",
    "builtin_panel",
    "load_panel",
    "resolve_panel",
    "round_ste",
]
