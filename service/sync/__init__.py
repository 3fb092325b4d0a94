"""The loops: polling and reconciliation, the inbox worker, the outbox deliverer."""
