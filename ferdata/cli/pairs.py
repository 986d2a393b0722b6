"""`ferdata pairs` (not yet built: registers no command)."""
