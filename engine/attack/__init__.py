"""The attack layer: parameters and strength presets, the I-FGSM loop, its step direction and
the one verdict (a panel of views)."""

from .config import AttackConfig
from .loop import IDLE, IFGSM, AttackResult, Idle
from .strength import PRESETS, STRENGTHS, Strength, strength_config
from .verdict import PanelJudge, ViewVerdict

__all__ = [
    "AttackConfig",
    "AttackResult",
    "IDLE",
    "IFGSM",
    "Idle",
    "PRESETS",
    "PanelJudge",
    "STRENGTHS",
    "Strength",
    "ViewVerdict",
    "strength_config",
]
