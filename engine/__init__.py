"""camo-engine: protect photos before sharing with adversarial camouflage.

The data flows one way: load -> enhance -> attack -> encode -> report.  The library entry
point is :class:`Protector`; the command line (``camo-engine``) is a thin layer over it.
"""

from .attack import IFGSM, AttackConfig, AttackResult
from .protector import Protected, Protector
from .victims import Victim, load_victim

__all__ = [
    "AttackConfig",
    "AttackResult",
    "IFGSM",
    "Protected",
    "Protector",
    "Victim",
    "load_victim",
]
__version__ = "0.1.0"
