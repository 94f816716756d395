"""Built-in hardware parts and the ``hw`` command, registered like any plugin."""
