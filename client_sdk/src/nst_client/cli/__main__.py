"""``python -m nst_client.cli`` runs the CLI (as ``python -m nst_client`` does)."""

from . import main

raise SystemExit(main())
