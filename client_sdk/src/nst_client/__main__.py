"""``python -m nst_client`` runs the CLI."""

from .cli import main

raise SystemExit(main())
