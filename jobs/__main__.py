"""`python -m jobs ...` runs the same command line as `sessionlake ...`."""

import sys

from jobs.cli import main

sys.exit(main())
