"""The tutorial's math in NumPy: the executable specification (imports numpy only)."""
