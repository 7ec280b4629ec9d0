"""The knowledge graph in MongoDB (and FerretDB): ``GraphStore`` and its collection families.

Write model: evidence is the truth (deterministic ids, inserted once), entities and
relations are reconciled from it, video progress only moves forward; see ``graph`` and
``videos``.
"""

from streams.store.communities import CommunityStore
from streams.store.graph import GraphWrites, WriteSummary
from streams.store.graph_store import GraphStore
from streams.store.mongo import Doc, Mongo, connect
from streams.store.reads import GRAPH_COLLECTIONS, GraphReads
from streams.store.videos import VideoProgress, video_state

__all__ = ["GRAPH_COLLECTIONS", "CommunityStore", "Doc", "GraphReads", "GraphStore", "GraphWrites", "Mongo",
           "VideoProgress", "WriteSummary", "connect", "video_state"]
