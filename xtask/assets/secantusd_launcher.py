"""Runs SecantusDB (the MongoDB stand-in) for Storefront's one-machine stack, tests and the cluster's development backends.

It is `secantusd-py` with two mends to SecantusDB 0.7.0b3 (xtask/src/install.rs pins the version),
each found with a WiredTiger statistics cursor while chasing the checkout's p99 under load
(docs/saga.md, "Looking closer at 8.6/s"):

- **The TTL sweeper let go of its read snapshot only when it next woke.** WiredTiger snapshots
  are sticky per session; the sweeper closes its session *before* each sweep, so after one it
  parks for 60 s still holding that sweep's snapshot. Nothing older than it may be discarded
  meanwhile: under load the in-memory store cannot split or evict its hot pages, every write
  tries a forced eviction that fails (5,600 in four seconds), and the whole database runs 10x
  slower until the next sweep lets go — a 2–3 s stall a minute into every benchmark, and a slow
  plateau after it. Here the sweeper also closes its session *after* each sweep.
- **findAndModify scanned the whole collection.** Having picked its document, it writes with
  `{_id: <picked>, $and: [<query>]}`, and the planner gives up on any filter with a top-level
  `$` key, so every findAndModify decoded every document of its collection (the claims of an
  order, a payment, a reservation: a checkout's cost grew with the shop's history). Here such a
  filter, when `_id` is a plain value (or `$eq`, `$in` of them) and no collation is asked for, is
  a point lookup on `_id`; every caller still matches the whole filter against the document
  found, as it does after the planner's own per-field lookups. (`explain` is not mended: it
  still reports such a filter as a collection scan.)

Usage: python secantusd_launcher.py [any secantusd-py option]
       python secantusd_launcher.py --self-test      (checks both mends; exit status 0 when they hold)
"""

import logging
import sys
import threading
import time

import secantus.storage as storage
from secantus.cli import main as secantusd_main

log = logging.getLogger("secantus.storage.ttl")


def _ttl_sweep_loop(self):
    """`Storage._ttl_sweep_loop` as shipped, closing the thread's session after each sweep too."""
    try:
        while not self._ttl_stop.wait(self._ttl_sweep_seconds):
            if self._closed:
                return
            self._reset_thread_session()
            try:
                self.prune_ttl_all_collections()
            except Exception:
                log.exception("ttl sweep failed")
            finally:
                # The mend: no snapshot held while parked.
                self._reset_thread_session()
    finally:
        self._reset_thread_session()


_shipped_try_index_id_keys = storage.Storage._try_index_id_keys


def _try_index_id_keys(self, db, coll, filter, *, collation=None):
    """`_id` equality beside `$and` is a point lookup, as `_id` alone is. The caller matches the
    whole filter against what comes back (as for the planner's per-field lookups)."""
    if (
        filter
        and collation is None
        and "_id" in filter
        and "$and" in filter
        and not self._is_timeseries(db, coll)
    ):
        keys = storage._id_point_lookup_keys(filter["_id"])
        if keys is not None:
            found = (self._doc_recordid(db, coll, key) for key in keys)
            return [recordid for recordid in found if recordid is not None]
    return _shipped_try_index_id_keys(self, db, coll, filter, collation=collation)


def mend():
    import secantus

    if getattr(secantus, "__version__", None) != "0.7.0b3":
        sys.exit(
            f"secantusd_launcher: SecantusDB is {getattr(secantus, '__version__', '?')}, not 0.7.0b3: "
            "check whether its TTL sweeper and findAndModify still need these mends"
        )
    for name in (
        "_ttl_sweep_loop",
        "_reset_thread_session",
        "prune_ttl_all_collections",
        "_try_index_id_keys",
        "_is_timeseries",
        "_doc_recordid",
        "_scan_docs",
    ):
        if not hasattr(storage.Storage, name):
            sys.exit(f"secantusd_launcher: SecantusDB has no Storage.{name}: is it still 0.7.0b3?")
    if not hasattr(storage, "_id_point_lookup_keys"):
        sys.exit("secantusd_launcher: SecantusDB has no _id_point_lookup_keys: is it still 0.7.0b3?")
    storage.Storage._ttl_sweep_loop = _ttl_sweep_loop
    storage.Storage._try_index_id_keys = _try_index_id_keys


def self_test():
    """Both mends, against an in-process server: exits non-zero with what failed."""
    import datetime

    import pymongo
    from secantus.server import SecantusDBServer

    failures = []
    sweep = 3.0
    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=":memory:", ttl_sweep_seconds=sweep)
    server.start()
    client = None
    try:
        host, port = server.address
        client = pymongo.MongoClient(host, port, directConnection=True, retryWrites=False)
        db = client.selftest

        # findAndModify with a filter beyond _id reads one document, not the collection.
        db.orders.insert_many([{"_id": f"o{i}", "state": "pending"} for i in range(3000)])
        scanned = []
        shipped_scan = storage.Storage._scan_docs

        def counting_scan(self, db_name, coll):
            for row in shipped_scan(self, db_name, coll):
                if coll == "orders":
                    scanned.append(coll)
                yield row

        storage.Storage._scan_docs = counting_scan
        try:
            moved = db.orders.find_one_and_update(
                {"_id": "o1234", "state": "pending"},
                {"$set": {"state": "paid"}},
                return_document=pymongo.ReturnDocument.AFTER,
            )
            missed = db.orders.find_one_and_update(
                {"_id": "o1234", "state": "pending"}, {"$set": {"state": "shipped"}}
            )
            # The filter the mend plans from `_id` alone, with the rest no longer true: nothing
            # may be written or removed.
            stale = {"_id": "o1234", "$and": [{"state": "pending"}]}
            updated = db.orders.update_one(stale, {"$set": {"state": "shipped"}}).matched_count
            deleted = db.orders.delete_one(stale).deleted_count
            found = db.orders.count_documents(stale)
        finally:
            storage.Storage._scan_docs = shipped_scan
        if moved is None or moved.get("state") != "paid" or missed is not None:
            failures.append(f"findAndModify answered {moved!r} then {missed!r}")
        if (updated, deleted, found) != (0, 0, 0):
            failures.append(
                f"a filter with _id and a false $and matched: {updated} updated, {deleted} deleted, {found} found"
            )
        if scanned:
            failures.append(
                f"findAndModify and the writes on _id beside $and read {len(scanned)} documents"
            )

        # The sweeper still expires documents, and holds no snapshot once it has.
        # Around it, collections with indexes of their own, as a shop has: the sweeper's walks
        # of the catalog stop inside it rather than at its end.
        for name in ("carts", "sessions", "users"):
            db[name].create_index("expires_at", expireAfterSeconds=0)
            db[name].create_index("owner")
            db[name].insert_one({"_id": "live", "owner": "x", "expires_at": datetime.datetime(2999, 1, 1)})
        db.sessions.insert_one({"_id": "old", "expires_at": datetime.datetime(2000, 1, 1)})
        deadline = time.monotonic() + 3 * sweep
        while db.sessions.count_documents({"_id": "old"}) and time.monotonic() < deadline:
            time.sleep(0.05)
        if db.sessions.count_documents({"_id": "old"}):
            failures.append(f"the TTL sweeper expired nothing in {3 * sweep:.0f} s")
        # Right after a sweep, the sweeper parks for `sweep` seconds.
        conn = server.storage._conn
        conn.reconfigure("statistics=(fast)")
        for i in range(400):
            db.counters.update_one({"_id": "n"}, {"$inc": {"n": 1}}, upsert=True)
        session = conn.open_session()
        stats = session.open_cursor("statistics:", None, None)
        pinned = None
        while stats.next() == 0:
            desc, _, value = stats.get_value()
            if desc == "transaction: transaction range of IDs currently pinned":
                pinned = value
        stats.close()
        session.close()
        if pinned is None:
            failures.append("WiredTiger reports no pinned transaction range")
        elif pinned > 100:
            failures.append(f"{pinned} transactions pinned after 400 writes: a snapshot is held")
    finally:
        if client is not None:
            client.close()
        server.stop()
    for failure in failures:
        print(f"secantusd_launcher self-test: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    mend()
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(self_test())
    sys.exit(secantusd_main())
