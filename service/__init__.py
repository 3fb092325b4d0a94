"""wiseflow-sync: an integration service between an institution's systems and UNIwise WISEflow."""

__version__ = "0.1.0"
