"""One database handle shared by the collection families: resolved lazily, written in
commands of bounded size, inserts that treat "already stored" as success."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from pymongo import DeleteOne, MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from streams.settings import Settings

Doc = dict[str, Any]
T = TypeVar("T")

DUPLICATE_KEY = 11000


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def connect(settings: Settings, *, app_name: str = "graphrag-streams") -> MongoClient[Doc]:
    tls: dict[str, Any] = {"tlsCAFile": settings.mongodb.tls_ca_file} if settings.mongodb.tls_ca_file else {}
    return MongoClient(
        settings.mongodb.uri.get_secret_value(),
        serverSelectionTimeoutMS=settings.mongodb.server_selection_timeout_ms,
        appname=app_name,
        tz_aware=True,
        **tls,
    )


class Mongo:
    """A database, or a callable that names it on first use (and again after a failure): a
    process that starts while MongoDB is down still starts, and never reads the wrong graph."""

    def __init__(self, db: Database[Doc] | Callable[[], Database[Doc]], max_ops_per_command: int = 25,
                 client: MongoClient[Doc] | None = None) -> None:
        self._db: Database[Doc] | None = None if callable(db) else db
        self._resolve_db = db if callable(db) else None
        self._client: MongoClient[Doc] | None = client or (None if callable(db) else db.client)
        self.max_ops = max_ops_per_command

    @property
    def db(self) -> Database[Doc]:
        if self._db is None:
            assert self._resolve_db is not None  # narrows a type  # nosec B101
            self._db = self._resolve_db()
        return self._db

    def coll(self, name: str) -> Collection[Doc]:
        return self.db[name]

    def close(self) -> None:
        client = self._db.client if self._db is not None else self._client
        if client is not None:
            client.close()

    def ping(self) -> bool:
        try:
            self.db.command("ping")
            return True
        except Exception:
            return False

    def bulk(self, coll: str, ops: Sequence[UpdateOne | DeleteOne]) -> None:
        """Unordered, in commands of ``max_ops`` operations (FerretDB's limits, MongoSettings)."""
        for part in batched(ops, self.max_ops):
            self.coll(coll).bulk_write(list(part), ordered=False)

    def insert_new(self, coll: str, docs: Sequence[Doc]) -> int:
        """Insert documents whose ``_id`` may already exist; returns how many were new."""
        inserted = 0
        for part in batched(docs, 1000):
            try:
                inserted += len(self.coll(coll).insert_many(list(part), ordered=False).inserted_ids)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                inserted += int(exc.details.get("nInserted", 0))
        return inserted

    def insert_or_set(self, coll: str, docs: Sequence[Doc]) -> None:
        """Write documents believed new: inserted (FerretDB on SQLite takes tens of thousands of
        inserts/s but a few hundred upserts/s); one another writer stored meanwhile (a
        duplicate key) gets the same fields with ``$set``, as an upsert would have."""
        for part in batched(docs, 1000):
            try:
                self.coll(coll).insert_many(list(part), ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                taken = [part[e["index"]] for e in errors]
                self.bulk(coll, [UpdateOne({"_id": d["_id"]}, {"$set": {k: v for k, v in d.items() if k != "_id"}},
                                           upsert=True) for d in taken])

    def current(self, coll: str, ids: Sequence[str]) -> dict[str, Doc]:
        """The stored documents of ``ids``, by id."""
        out: dict[str, Doc] = {}
        for part in batched(ids, 1000):
            out.update({d["_id"]: d for d in self.coll(coll).find({"_id": {"$in": list(part)}})})
        return out


class Collections:
    """The base of a collection family: the shared handle and collection lookup."""

    def __init__(self, mongo: Mongo) -> None:
        self.mongo = mongo

    def coll(self, name: str) -> Collection[Doc]:
        return self.mongo.coll(name)
