"""I/O at the edge: HTTP client, SQLite store, webhook handlers, sink, telemetry."""
