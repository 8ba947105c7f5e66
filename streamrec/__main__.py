"""``python -m streamrec`` runs the CLI."""

import sys

from streamrec.cli import main

sys.exit(main())
