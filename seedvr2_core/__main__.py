"""`python -m seedvr2_core`: the `seedvr2` command line (see seedvr2_core.cli)."""

import sys

from .cli import main

sys.exit(main())
