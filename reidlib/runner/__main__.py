import sys

from reidlib.runner.cli import main, quiet_teardown

rc = main()
if rc:
    quiet_teardown()
sys.exit(rc)
