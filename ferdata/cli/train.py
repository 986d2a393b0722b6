"""`ferdata train` (not yet built: registers no command)."""
