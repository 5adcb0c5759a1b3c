"""`python -m taco` (and `torchrun -m taco`) run the CLI."""

import sys

from taco.cli import main

sys.exit(main())
