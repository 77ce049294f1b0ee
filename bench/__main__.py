"""`python -m tempbench ...` (and `torchrun -m tempbench ...`): the same as the `tempbench` command."""

import sys

from tempbench.cli import main

sys.exit(main())
