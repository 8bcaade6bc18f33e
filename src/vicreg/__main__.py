"""``python -m vicreg``: the ``vicreg`` command."""

import sys

from .cli import main

sys.exit(main())
