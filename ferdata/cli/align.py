"""`ferdata align` (not yet built: registers no command)."""
