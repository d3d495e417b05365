"""``python -m segkit`` runs the CLI."""

import sys

from segkit.cli import main

sys.exit(main())
