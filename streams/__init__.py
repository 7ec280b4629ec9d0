"""graphrag-streams: domain logic (plain, typed functions) and the clients around it.

The Faust agents in ``agents/`` are thin wrappers that call into this package.
"""

__version__ = "0.1.0"
