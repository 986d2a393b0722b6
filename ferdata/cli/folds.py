"""`ferdata folds` (not yet built: registers no command)."""
