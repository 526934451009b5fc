"""``python -m camo_engine.cli``: the same command line as the ``camo-engine`` script."""

import sys

from . import main

sys.exit(main())
