"""One module per `wiseflow-sync` command; each exposes `register(subparsers)`."""
