"""The HTTP API: a thin FastAPI layer over the domain services in ``registry`` and ``gis``."""
