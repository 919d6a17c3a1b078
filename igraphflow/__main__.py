r"""``python -m igraphflow``: the command line, as the ``igraphflow`` command."""

from .cli import main

raise SystemExit(main())
