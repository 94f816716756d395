"""Built-in draft-selection commands (``select``), registered like any plugin."""
