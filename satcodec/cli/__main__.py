"""``python -m satcodec.cli`` (the same as ``satcodec`` and ``python -m satcodec``)."""

import sys

from satcodec.cli import main

sys.exit(main())
