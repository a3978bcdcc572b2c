"""The ``smartcode`` command line."""
