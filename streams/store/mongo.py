"""One database handle shared by the collection families: resolved lazily, written in
commands of bounded size, inserts that treat "already stored" as success."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from pymongo import DeleteOne, MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from streams.settings import Settings

Doc = dict[str, Any]
T = TypeVar("T")

DUPLICATE_KEY = 11000
#: On a FerretDB that scans for ``$in``, more values than this are looked up in one scan of the
#: collection (find_in).
SCAN_ABOVE = 100
SCAN_BATCH = 10_000
#: On FerretDB, up to this many documents are deleted one ``_id`` at a time (delete_ids).
DELETE_ONE_BY_ONE = 500


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
        self._filters_scan: bool | None = None
        self._in_indexed: dict[tuple[str, str], bool] = {}

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

    @property
    def filters_scan(self) -> bool:
        """True on FerretDB: as released it answers every filter not on a single ``_id`` by
        decoding the whole collection, and ``$in`` costs a comparison per listed value for every
        document. (The local stack's build serves ``$in`` from the index: ``in_uses_index``.)"""
        if self._filters_scan is None:
            self._filters_scan = "ferretdbVersion" in self.db.command("buildInfo")
        return self._filters_scan

    def in_uses_index(self, coll: str, field: str) -> bool:
        """Whether the server answers ``{field: {$in: [...]}}`` on ``coll`` from an index.

        Always on MongoDB (given the index). On FerretDB it depends on the build: the local
        stack's (stack/localstack.py FERRETDB_PATCHES) pushes the filter down to SQLite's
        index, a released one scans. Asked once per collection and field, by explain; not
        remembered while the collection does not exist yet (nothing to scan then)."""
        if not self.filters_scan:
            return True
        known = self._in_indexed.get((coll, field))
        if known is None:
            explained = self.db.command("explain", {"find": coll, "filter": {field: {"$in": [""]}}})
            plan = " ".join(str(step) for step in explained.get("queryPlanner", {}).get("Plan") or [])
            if not plan:
                return False
            known = self._in_indexed[(coll, field)] = "USING INDEX" in plan
        return known

    def find_in(self, coll: str, field: str, values: Iterable[Any], projection: Mapping[str, Any] | None = None,
                ) -> Iterator[Doc]:
        """The documents whose ``field`` is one of ``values``: ``$in`` queries of 1,000 values
        where an index serves them.

        On a FerretDB that scans for ``$in`` (``in_uses_index``), its cost grows with the
        values (1,000 ids: twice a plain scan of the collection), so more than ``SCAN_ABOVE``
        values are found in one plain scan, filtered here; up to that many ``_id`` values are
        looked up one by one, as a single ``_id`` is served by its index (42 chunks: a sixth
        of the time of one ``$in`` scan).
        """
        wanted = set(values)
        if not wanted:
            return
        proj = None if projection is None else {**projection, field: 1}
        if not self.in_uses_index(coll, field):
            if field == "_id" and len(wanted) <= SCAN_ABOVE:
                for value in sorted(wanted):
                    found = self.coll(coll).find_one({"_id": value}, proj)
                    if found is not None:
                        yield found
                return
            if len(wanted) > SCAN_ABOVE:
                for d in self.coll(coll).find({}, proj, batch_size=SCAN_BATCH):
                    if d.get(field) in wanted:
                        yield d
                return
        for part in batched(sorted(wanted), 1000):
            yield from self.coll(coll).find({field: {"$in": list(part)}}, proj)

    def delete_ids(self, coll: str, ids: Sequence[str]) -> None:
        """Delete documents by ``_id``, in ``$in`` commands of 1,000 where the index serves them.

        On a FerretDB that scans for ``$in`` (``in_uses_index``), up to ``DELETE_ONE_BY_ONE``
        ids go one by one (in commands of ``max_ops``), each served by the ``_id`` index, where
        a ``$in`` filter compares every value with every document (of 3,600 evidence
        documents, 100 deleted: 0.1 s against 0.45 s; 300: 0.45 s against 1.5 s); more go in
        ``$in`` commands, as each delete by id costs 1 to 2 ms."""
        if not ids:
            return
        if not self.in_uses_index(coll, "_id") and len(ids) <= DELETE_ONE_BY_ONE:
            self.bulk(coll, [DeleteOne({"_id": i}) for i in ids])
            return
        for part in batched(ids, 1000):  # one command, not one per document
            self.coll(coll).delete_many({"_id": {"$in": list(part)}})

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
        """Write documents believed new: inserted in bulk (thousands per command, where upserts
        go one by one), and any that someone else stored meanwhile set by ``_id`` instead,
        so the outcome is an upsert's."""
        for part in batched(docs, 1000):
            try:
                self.coll(coll).insert_many(list(part), ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY or "index" not in e for e in errors):
                    raise
                again = [part[e["index"]] for e in errors]
                self.bulk(coll, [UpdateOne({"_id": d["_id"]}, {"$set": {k: v for k, v in d.items() if k != "_id"}},
                                           upsert=True) for d in again])

    def current(self, coll: str, ids: Sequence[str]) -> dict[str, Doc]:
        """The stored documents of ``ids``, by id."""
        return {d["_id"]: d for d in self.find_in(coll, "_id", ids)}


class Collections:
    """The base of a collection family: the shared handle and collection lookup."""

    def __init__(self, mongo: Mongo) -> None:
        self.mongo = mongo

    def coll(self, name: str) -> Collection[Doc]:
        return self.mongo.coll(name)
