"""`python -m lodbrok_cli`: the same as the `lodbrok` console script."""

import sys

from lodbrok_cli.main import main

sys.exit(main())
