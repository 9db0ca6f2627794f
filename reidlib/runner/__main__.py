import sys

from reidlib.runner.cli import main

sys.exit(main())
