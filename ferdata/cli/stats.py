"""`ferdata stats` (being built)."""
