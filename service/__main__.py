"""`python -m service` is the same as the `wiseflow-sync` command."""

from service.cli import main

raise SystemExit(main())
