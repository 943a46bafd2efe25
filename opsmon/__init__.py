"""opsmon: a streaming real-time operations monitor for small and mid-sized businesses."""

__version__ = "0.1.0"
