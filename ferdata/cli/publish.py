"""`ferdata publish` (not yet built: registers no command)."""
