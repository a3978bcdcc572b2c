"""QR labels for smart codes: signed label URLs (``/c/{code}?s=...``) and printable sheets.

Reserved for the QR-label work on the roadmap; the code scheme it encodes lives in ``registry.codes``
(which already accepts a scanned label URL).
"""
