import sys

from satcodec.cli import main

sys.exit(main())
