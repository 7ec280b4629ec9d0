"""The HTTP API and explorer page (`graphrag-streams serve`); :func:`create_app` builds it."""

from streams.api.app import create_app

__all__ = ["create_app"]
