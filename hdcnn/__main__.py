"""``python -m hdcnn``: the command-line interface (see :mod:`hdcnn.cli`)."""

from hdcnn.cli import main

raise SystemExit(main())
