"""`python -m vertjax <command>`: the same entry point as the `vertjax` console script."""

import sys

from vertjax import cli

if __name__ == "__main__":
    sys.exit(cli.main())
