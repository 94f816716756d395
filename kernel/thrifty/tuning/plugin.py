"""Built-in tuning parts: registered through the ``thrifty`` entry point like any plugin."""
