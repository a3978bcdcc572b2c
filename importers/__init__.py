"""Reading inventory files (Shapefile, GeoJSON, GeoPackage, CSV, Excel) and mapping them to draft records.

Entry points: :func:`importers.formats.open_source` streams SourceChunks from a file, and
:func:`importers.mapping.map_chunk` turns each chunk into a DraftChunk using a mapping profile.
"""
