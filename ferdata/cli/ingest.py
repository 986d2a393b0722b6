"""`ferdata ingest` (being built)."""
