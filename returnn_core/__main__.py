"""``python -m returnn_core`` runs the ``returnn`` command."""

import sys

from returnn_core.cli import main

sys.exit(main())
