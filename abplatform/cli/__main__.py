"""``python -m abplatform.cli``: the command line."""

from abplatform.cli.app import main

main()
