"""``python -m verifier`` is the ``dpop-verifier`` command."""

import sys

from verifier.cli import main

sys.exit(main())
