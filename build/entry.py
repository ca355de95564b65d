"""PyInstaller entry point: the `edgegw` command."""

import sys

from edgegw.__main__ import main

sys.exit(main())
