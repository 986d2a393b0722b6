"""`ferdata tag` (not yet built: registers no command)."""
