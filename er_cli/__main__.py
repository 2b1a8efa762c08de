import sys

from er_cli import main

sys.exit(main())
