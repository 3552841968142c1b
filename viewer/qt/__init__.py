"""PySide6 user interface: widgets gather input, call core logic in workers, show results."""
