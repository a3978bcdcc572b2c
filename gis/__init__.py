"""Pure geographic domain logic: coordinate systems, service area, DMS parsing, CRS detection.

Nothing in this package may import the web framework or the database layer.
"""
