"""Allow `python -m devstack`."""

import sys

from devstack.cli import development_tokens, main

sys.exit(main(extra_lines=[development_tokens]))
