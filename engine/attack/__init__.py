"""The attack layer: parameters, the I-FGSM loop, its step direction and the one verdict."""

from .config import AttackConfig
from .loop import IFGSM, AttackResult
from .verdict import Verdict

__all__ = ["AttackConfig", "AttackResult", "IFGSM", "Verdict"]
