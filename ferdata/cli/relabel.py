"""`ferdata relabel` (not yet built: registers no command)."""
