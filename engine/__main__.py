"""``python -m camo_engine``: the same command line as the ``camo-engine`` script."""

import sys

from .cli import main

sys.exit(main())
