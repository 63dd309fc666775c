"""python -m dcmweb.testing: run the test server (same as dcmweb-testserver)."""

import sys

from .cli import main

sys.exit(main())
