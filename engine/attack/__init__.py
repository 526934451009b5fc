"""The attack layer: parameters and strength presets, the I-FGSM loop, its step direction and
the one verdict (a panel of views)."""

from .config import AttackConfig
from .loop import IFGSM, AttackResult
from .strength import PRESETS, STRENGTHS, Strength, strength_config
from .verdict import PanelJudge, ViewVerdict

__all__ = [
    "AttackConfig",
    "AttackResult",
    "IFGSM",
    "PRESETS",
    "PanelJudge",
    "STRENGTHS",
    "Strength",
    "ViewVerdict",
    "strength_config",
]
