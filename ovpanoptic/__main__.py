"""``python -m ovpanoptic`` runs the CLI."""

from .cli import main

raise SystemExit(main())
