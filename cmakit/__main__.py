"""``python -m cmakit``: see :mod:`cmakit.cli`."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run the command line (the ``cmakit`` console script)."""
    from cmakit.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
