"""Sinks: where derived records are written (ClickHouse tables)."""
