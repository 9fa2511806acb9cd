"""``python -m dsprims``: the command-line interface (see :mod:`dsprims.cli`)."""

from dsprims.cli import main

raise SystemExit(main())
