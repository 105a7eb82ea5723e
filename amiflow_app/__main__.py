"""``python -m amiflow_app`` runs the ``amiflow`` console script."""

from amiflow_app.cli import main

raise SystemExit(main())
