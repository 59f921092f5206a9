"""`python -m dyadgen` is the `dyadgen` command."""

import sys

from dyadgen.cli import main

sys.exit(main())
