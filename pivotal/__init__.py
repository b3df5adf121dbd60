"""The daemon: command line, composition root, lifecycle, embedded PostgreSQL, metrics."""

__version__ = "0.1.0"
