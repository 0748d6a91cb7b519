"""``python -m dit_core animate ...`` (see ``dit_core.cli``)."""

import sys

from .cli import main

sys.exit(main())
