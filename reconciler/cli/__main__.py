"""`python -m reconciler.cli`, the same as the `grayops` command."""

import sys

from reconciler.cli.main import main

sys.exit(main())
