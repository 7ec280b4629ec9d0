"""The knowledge graph in MongoDB: one handle, four collection families.

``GraphStore`` opens the database and hands out the families, each a small class over the
collections it owns:

* ``graph`` (GraphWrites): evidence, chunks, entities, relations, merges, forgetting;
* ``videos`` (VideoProgress): per-stage progress and the state derived from it;
* ``communities`` (CommunityStore): communities and community runs;
* ``reads`` (GraphReads): whole-graph reads (counts, top entities, comparisons).

Only operations both MongoDB and FerretDB 1.24 support are used: CRUD, unordered bulk
writes, upserts, ``$set/$setOnInsert/$min/$max``, unique indexes, ``$match/$group($sum)``.
Update commands are split into ``max_ops_per_command`` operations (see MongoSettings).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import OperationFailure

from streams.settings import Settings
from streams.store.communities import CommunityStore
from streams.store.graph import GraphWrites
from streams.store.mongo import Doc, Mongo, connect
from streams.store.reads import GraphReads
from streams.store.videos import VideoProgress

# One document naming the database reads go to after `graph promote` (in the live database).
POINTER = "graph_pointer"
NAMESPACE_NOT_FOUND = 26  # MongoDB's error code for a collection that does not exist


class GraphStore:
    """The database handle and the collection families over it."""

    def __init__(self, db: Database[Doc] | Callable[[], Database[Doc]], max_ops_per_command: int = 25,
                 *, client: MongoClient[Doc] | None = None) -> None:
        self.mongo = Mongo(db, max_ops_per_command, client=client)
        self.videos = VideoProgress(self.mongo)
        self.graph = GraphWrites(self.mongo, self.videos)
        self.communities = CommunityStore(self.mongo)
        self.reads = GraphReads(self.mongo)

    @property
    def db(self) -> Database[Doc]:
        return self.mongo.db

    @property
    def max_ops(self) -> int:
        return self.mongo.max_ops

    @classmethod
    def from_settings(cls, settings: Settings, *, app_name: str = "graphrag-streams",
                      database: str | None = None) -> GraphStore:
        client = connect(settings, app_name=app_name)
        return cls(client[database or settings.mongodb.database], settings.mongodb.max_ops_per_command)

    @classmethod
    def for_reads(cls, settings: Settings, *, app_name: str = "graphrag-streams") -> GraphStore:
        """The graph queries and the API read: the promoted one (`graph promote`), else the
        configured one; looked up on first use (nothing is read here)."""
        live = cls.from_settings(settings, app_name=app_name)

        def resolve() -> Database[Doc]:
            promoted = live.read_database()
            return live.db if promoted in (None, live.db.name) else live.db.client[promoted]

        return cls(resolve, settings.mongodb.max_ops_per_command, client=live.db.client)

    # The pointer lives in the configured (live) database: one document naming the
    # database that reads go to. The pipeline always writes where its settings say.
    def read_database(self) -> str | None:
        doc = self.coll(POINTER).find_one({"_id": "reads"})
        return str(doc["database"]) if doc else None

    def set_read_database(self, database: str | None) -> None:
        if database is None or database == self.db.name:
            self.coll(POINTER).delete_one({"_id": "reads"})
        else:
            self.coll(POINTER).replace_one({"_id": "reads"}, {"database": database, "at": datetime.now(UTC)},
                                           upsert=True)

    def close(self) -> None:
        self.mongo.close()

    def ping(self) -> bool:
        return self.mongo.ping()

    def coll(self, name: str) -> Collection[Doc]:
        return self.mongo.coll(name)

    def document_count(self, name: str) -> int:
        """The collection's size from its statistics (``$collStats``), without reading it:
        FerretDB answers ``count`` (and so ``estimated_document_count``) by scanning, about a
        second per collection on the corpus graph; a missing collection counts 0."""
        try:
            return sum(int(s.get("count", 0)) for s in self.coll(name).aggregate([{"$collStats": {"count": {}}}]))
        except OperationFailure as exc:
            if exc.code == NAMESPACE_NOT_FOUND:
                return 0
            raise

    def ensure_indexes(self) -> None:
        """Idempotent; every worker and the CLI call it on start."""
        self.coll("chunks").create_index([("video_id", ASCENDING), ("index", ASCENDING)])
        self.coll("entity_mentions").create_index([("entity_id", ASCENDING)])
        self.coll("entity_mentions").create_index([("chunk_id", ASCENDING)])
        self.coll("entity_mentions").create_index([("video_id", ASCENDING)])
        self.coll("relation_evidence").create_index([("relation_id", ASCENDING)])
        self.coll("relation_evidence").create_index([("chunk_id", ASCENDING)])
        self.coll("relation_evidence").create_index([("video_id", ASCENDING)])
        self.coll("relations").create_index([("source_id", ASCENDING)])
        self.coll("relations").create_index([("target_id", ASCENDING)])
        self.coll("entities").create_index([("mention_count", DESCENDING)])
        self.coll("entities").create_index([("type", ASCENDING), ("key", ASCENDING)])
        self.coll("communities").create_index([("level", ASCENDING)])
        self.coll("communities").create_index([("members", ASCENDING)])  # an entity's communities (API)
