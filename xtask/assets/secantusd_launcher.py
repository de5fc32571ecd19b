"""Runs SecantusDB (the MongoDB stand-in) for Storefront's one-machine stack, tests and the cluster's development backends.

It is `secantusd-py` with six mends to SecantusDB 0.7.0b3 (xtask/src/install.rs pins the version),
found while chasing the checkout's p99 under load (docs/saga.md, "Looking closer at 8.6/s" and
after), the first two with a WiredTiger statistics cursor, the others with `py-spy`:

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
- **The TTL sweeper decoded every document of every TTL-indexed collection, each minute, under
  the global lock.** Its per-index filter (`{field: {$lt: now - expireAfterSeconds}}`) was only
  matched against a scan of the whole collection, so the sweep's stall grew with the data kept
  (processed events for 30 days, published outbox records): 86–97 ms at 3,500 documents, and
  linear in what is kept. Here its candidates come from that filter through the
  write paths' own planner (`_candidates_iter`, the TTL index's range), and the sweep still
  matches each candidate against its filters before it deletes, so what expires is unchanged.
- **Every command read its database's profiler settings from WiredTiger under the global lock**
  (3–4 % of the server's CPU a command in a microbenchmark of the shop's kind of commands, and one
  more turn of the global lock each). Here they are kept in memory once read; the `profile`
  command, their only writer, updates them when it stores them.
- **Every step of a command read the collection's index specifications and options from
  WiredTiger again** (the planner, the unique checks, the partial-filter, multikey and options
  lists: an update read its indexes 7 times, a transaction's insert and update 13): 15 % of the
  server's CPU under the checkout load. Here each is read once per snapshot: what a command
  read inside a statement's own transaction or a user transaction's statement (where its
  snapshot is pinned) is kept until that transaction or session ends, the command ends, or
  anything else asks for a cursor on the catalog's tables (every writer of them does, right
  before it writes). Outside a transaction every read sees the latest commit, so there nothing
  is kept and another connection's DDL between two steps of a command is seen, as shipped (a
  review found a delete with a hint, a `$lookup` and a sorted update going wrong otherwise). The
  bytes are kept as stored and decoded at each read, as shipped, so a caller that changes what it
  got changes nothing kept.
- **Every multi-document transaction opened a WiredTiger session, and none was ever freed.**
  WiredTiger's Python binding keeps every session object (and every cursor closed explicitly)
  alive after it is closed: under the checkout load (8 transactions an order) the server held
  5,800 sessions and 50,000 cursors after 90 s, each full garbage collection took 33 ms, then
  79 ms, growing with them (all of it under the interpreter lock), and memory grew without end.
  Here a transaction that ends leaves its session, reset, with its cursors for the next one
  (up to 64 idle; more, or one WiredTiger will not reset, are closed as shipped); its handle
  keeps a stand-in that refuses any further use.

Usage: python secantusd_launcher.py [any secantusd-py option]
       python secantusd_launcher.py --self-test      (checks the mends; exit status 0 when they hold)
"""

import contextlib
import datetime
import functools
import logging
import sys
import threading
import time

import secantus.commands as commands
import secantus.server as secantus_server
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


_shipped_prune_ttl = storage.Storage.prune_ttl
_shipped_scan_docs = storage.Storage._scan_docs
# Set on a thread while `prune_ttl` runs there: the `now` of that sweep.
_pruning = threading.local()


def prune_ttl(self, db, coll, *, now=None):
    """`Storage.prune_ttl` as shipped, given one clock reading for both its filters and the
    candidates; its one read of the collection is `_scan_docs` below."""
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    _pruning.now = now
    try:
        return _shipped_prune_ttl(self, db, coll, now=now)
    finally:
        _pruning.now = None


def _scan_docs(self, db, coll):
    """The whole collection, except inside `prune_ttl`: there, the documents its TTL filters may
    match, through the planner (a superset: the sweep matches each against its filters)."""
    now = getattr(_pruning, "now", None)
    if now is None:
        return _shipped_scan_docs(self, db, coll)
    filters = _ttl_candidate_filters(self, db, coll, now)
    if filters is None:
        return _shipped_scan_docs(self, db, coll)
    # The planner's own fallback (no usable index) is a scan: the shipped one.
    _pruning.now = None
    try:
        rows = {}
        for ttl_filter in filters:
            for row in self._candidates_iter(db, coll, ttl_filter):
                rows.setdefault(row[0], row)
        return [rows[recordid] for recordid in sorted(rows)]
    finally:
        _pruning.now = now


def _ttl_candidate_filters(self, db, coll, now):
    """A filter per TTL index that every document the shipped sweep would expire matches (the
    same cutoff: `prune_ttl` hands both the same `now`), or None (then the shipped scan) for any
    TTL index this does not plan: a partial one, a compound one, a TTL that is not a plain number
    of seconds."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=datetime.timezone.utc)
    filters = []
    for _name, key_spec, opts in self._iter_indexes(db, coll):
        if "expireAfterSeconds" not in opts:
            continue
        ttl = opts["expireAfterSeconds"]
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or opts.get("partialFilterExpression"):
            return None
        if len(key_spec) != 1:
            return None
        field = next(iter(key_spec))
        if not isinstance(field, str) or field == "_id":
            return None
        try:
            cutoff = now - datetime.timedelta(seconds=float(ttl))
        except (OverflowError, ValueError):
            return None
        filters.append({field: {"$lt": cutoff}})
    return filters


_shipped_get_profile = storage.Storage.get_profile
_shipped_set_profile = storage.Storage.set_profile


def _profiles(self):
    return vars(self).setdefault("_launcher_profiles", {})


def get_profile(self, db):
    """The settings `set_profile` last stored for `db`, or the stored ones, read once."""
    settings = _profiles(self).get(db)
    if settings is None:
        # Under the lock the shipped methods take (re-entrant): not between a `set_profile`'s
        # write and its keeping what it wrote.
        with self._lock:
            settings = _profiles(self).get(db)
            if settings is None:
                settings = _profiles(self)[db] = _shipped_get_profile(self, db)
    return dict(settings)


def set_profile(self, db, **settings):
    """Stores them as shipped and keeps what this thread reads back (its own write), under the
    lock, so two of them cannot keep their settings in the other order from the one they stored;
    settings that fail to store are dropped from memory, to be read again."""
    with self._lock:
        try:
            _shipped_set_profile(self, db, **settings)
            _profiles(self)[db] = _shipped_get_profile(self, db)
        except BaseException:
            _profiles(self).pop(db, None)
            raise


# The catalog memo: the index specs and collection options a command read through a pinned
# snapshot, by table and then by (database, collection), as stored; None outside a command.
_catalog = threading.local()
_CATALOG_TABLES = (storage._IDX_TABLE, storage._COLL_TABLE)
_shipped_cursor = storage.Storage._cursor
_shipped_iter_indexes = storage.Storage._iter_indexes
_shipped_coll_options = storage.Storage._coll_options
_shipped_dispatch = commands.dispatch


def _forget_catalog(table=None):
    memo = getattr(_catalog, "memo", None)
    if memo:
        if table is None:
            memo.clear()
        else:
            memo.pop(table, None)


def _cursor(self, table, *, overwrite=True):
    """As shipped; asked for a catalog table's cursor by anything but the memo's own reads (which
    may write through it: `create_index`, `_maybe_mark_multikey`, `_ensure_collection`, ...), the
    memo forgets what it holds of that table. The shipped writers ask for it right before they
    write, and read no catalog in between."""
    if table in _CATALOG_TABLES and not getattr(_catalog, "filling", False):
        _forget_catalog(table)
    return _shipped_cursor(self, table, overwrite=overwrite)


def _pinned(self):
    """Whether the thread reads through a pinned snapshot: in a statement's own transaction
    (`_batch_transaction`) or with a user transaction's session installed. Anywhere else every
    read sees the latest commit, and another connection's DDL between two steps of a command
    (after a hint was checked, between the lookups of a `$lookup`) is to be seen, as shipped."""
    return getattr(_catalog, "pinned", 0) > 0 or getattr(self._tls, "user_txn", None) is not None


def _remembered(self, table, db, coll, read):
    """What `read` gives of (`db`, `coll`) as stored, read once a command between the bounds
    `_forgetting` draws and only through a pinned snapshot; None elsewhere."""
    memo = getattr(_catalog, "memo", None)
    if memo is None or not _pinned(self):
        return None
    rows = memo.setdefault(table, {})
    key = (db, coll)
    if key not in rows:
        _catalog.filling = True
        try:
            rows[key] = read(self, db, coll)
        finally:
            _catalog.filling = False
    return rows[key]


def _stored_indexes(self, db, coll):
    return [
        (name, storage.bson.encode({"key": key_spec, "options": opts}))
        for name, key_spec, opts in _shipped_iter_indexes(self, db, coll)
    ]


def _iter_indexes(self, db, coll):
    """The collection's index specs, freshly decoded (callers may change them, as shipped)."""
    rows = _remembered(self, storage._IDX_TABLE, db, coll, _stored_indexes)
    if rows is None:
        return _shipped_iter_indexes(self, db, coll)
    return _decoded_indexes(rows)


def _decoded_indexes(rows):
    for name, blob in rows:
        payload = storage.bson.decode(blob)
        yield name, payload.get("key", {}), payload.get("options", {})


def _stored_options(self, db, coll):
    options = _shipped_coll_options(self, db, coll)
    return False if options is None else storage.bson.encode(options)


def _coll_options(self, db, coll):
    """The collection's options, freshly decoded; None when it does not exist."""
    blob = _remembered(self, storage._COLL_TABLE, db, coll, _stored_options)
    if blob is None:
        return _shipped_coll_options(self, db, coll)
    return None if blob is False else storage.bson.decode(blob)


def _forgetting(shipped, *, context=False, pins=None):
    """`shipped` (a context manager when `context`), forgetting the memo when it starts, when its
    body starts and when it ends: a transaction's or session's bound, where the thread's snapshot
    changes and other connections' DDL may come into view. When `pins(self)` holds as it starts,
    its body reads through one snapshot (see `_pinned`)."""
    if context:

        @contextlib.contextmanager
        def bounded(self, *args, **kwargs):
            pinning = pins is not None and pins(self)
            _forget_catalog()
            try:
                with shipped(self, *args, **kwargs) as value:
                    _forget_catalog()
                    if pinning:
                        _catalog.pinned = getattr(_catalog, "pinned", 0) + 1
                    try:
                        yield value
                    finally:
                        if pinning:
                            _catalog.pinned -= 1
            finally:
                _forget_catalog()

    else:

        def bounded(self, *args, **kwargs):
            _forget_catalog()
            try:
                return shipped(self, *args, **kwargs)
            finally:
                _forget_catalog()

    return functools.wraps(shipped)(bounded)


def _own_statement_transaction(self):
    """A statement's `_batch_transaction` is its own unless a user transaction's statement runs
    it (then it passes through)."""
    return getattr(self._tls, "user_txn", None) is None


def dispatch(doc, ctx):
    """A command, with a memo of the catalog of its own."""
    outer = getattr(_catalog, "memo", None)
    _catalog.memo = {}
    try:
        return _shipped_dispatch(doc, ctx)
    finally:
        _catalog.memo = outer
        _forget_catalog()


# A multi-document transaction's WiredTiger session, kept for the next transaction when it ends.
_shipped_begin_user_transaction = storage.Storage.begin_user_transaction
_shipped_close_user_txn_session = storage.Storage._close_user_txn_session
# At most this many idle sessions are kept (a transaction that finds none opens one, as shipped).
_TXN_SESSIONS_KEPT = 64


class _ReturnedSession:
    """What a finished transaction's handle holds once its session went back for reuse: any use
    of it fails, as a closed session's would, and cannot reach the next transaction's."""

    def __getattr__(self, name):
        raise RuntimeError("this transaction's session was returned when it ended")


def _idle_txn_sessions(self):
    return vars(self).setdefault("_launcher_txn_sessions", [])


def begin_user_transaction(self):
    """A session a finished transaction left, with its cursors, or a new one as shipped."""
    with self._lock:
        if self._closed:
            raise RuntimeError("storage is closed")
        idle = _idle_txn_sessions(self)
        if idle:
            session, cursors = idle.pop()
            handle = storage.UserTransactionHandle(session)
            handle.cursors = cursors
            return handle
    return _shipped_begin_user_transaction(self)


def _close_user_txn_session(self, handle):
    """Keeps the session and its cursors for the next transaction, every cursor reset; closes it
    as shipped when that fails (WiredTiger refuses to reset a session with a transaction still
    running), when enough are kept or the storage is closing."""
    if handle.closed:
        return
    try:
        handle.session.reset()
    except Exception:
        _shipped_close_user_txn_session(self, handle)
        return
    with self._lock:
        idle = _idle_txn_sessions(self)
        if not self._closed and len(idle) < _TXN_SESSIONS_KEPT:
            idle.append((handle.session, handle.cursors))
            handle.closed = True
            handle.session = _ReturnedSession()
            handle.cursors = {}
            return
    _shipped_close_user_txn_session(self, handle)


def mend():
    import secantus

    if getattr(secantus, "__version__", None) != "0.7.0b3":
        sys.exit(
            f"secantusd_launcher: SecantusDB is {getattr(secantus, '__version__', '?')}, not 0.7.0b3: "
            "check whether its TTL sweeper, findAndModify and profiler settings still need these mends"
        )
    for name in (
        "_ttl_sweep_loop",
        "_reset_thread_session",
        "prune_ttl_all_collections",
        "_try_index_id_keys",
        "_is_timeseries",
        "_doc_recordid",
        "_scan_docs",
        "prune_ttl",
        "_candidates_iter",
        "_iter_indexes",
        "get_profile",
        "set_profile",
        "_cursor",
        "_coll_options",
        "_batch_transaction",
        "use_user_transaction",
        "_install_txn_session",
        "commit_user_transaction",
        "abort_user_transaction",
        "begin_user_transaction",
        "_close_user_txn_session",
    ):
        if not hasattr(storage.Storage, name):
            sys.exit(f"secantusd_launcher: SecantusDB has no Storage.{name}: is it still 0.7.0b3?")
    if getattr(secantus_server, "dispatch", None) is not commands.dispatch:
        sys.exit("secantusd_launcher: SecantusDB's server no longer runs commands.dispatch: is it still 0.7.0b3?")
    if not hasattr(storage, "_id_point_lookup_keys"):
        sys.exit("secantusd_launcher: SecantusDB has no _id_point_lookup_keys: is it still 0.7.0b3?")
    storage.Storage._ttl_sweep_loop = _ttl_sweep_loop
    storage.Storage._try_index_id_keys = _try_index_id_keys
    storage.Storage.prune_ttl = prune_ttl
    storage.Storage._scan_docs = _scan_docs
    storage.Storage.get_profile = get_profile
    storage.Storage.set_profile = set_profile
    storage.Storage._cursor = _cursor
    storage.Storage._iter_indexes = _iter_indexes
    storage.Storage._coll_options = _coll_options
    storage.Storage._batch_transaction = _forgetting(
        storage.Storage._batch_transaction, context=True, pins=_own_statement_transaction
    )
    for name in ("use_user_transaction", "_install_txn_session"):
        setattr(storage.Storage, name, _forgetting(getattr(storage.Storage, name), context=True))
    for name in ("commit_user_transaction", "abort_user_transaction"):
        setattr(storage.Storage, name, _forgetting(getattr(storage.Storage, name)))
    commands.dispatch = dispatch
    secantus_server.dispatch = dispatch
    storage.Storage.begin_user_transaction = begin_user_transaction
    storage.Storage._close_user_txn_session = _close_user_txn_session


def self_test():
    """The mends, against an in-process server: exits non-zero with what failed."""
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
        shipped_scan = storage.Storage._scan_docs

        def counting_scans(collection, counted):
            """`_scan_docs` that counts the rows it gives of `collection` into `counted`."""

            def scan(self, db_name, coll):
                for row in shipped_scan(self, db_name, coll):
                    if coll == collection:
                        counted.append(coll)
                    yield row

            return scan

        scanned = []
        storage.Storage._scan_docs = counting_scans("orders", scanned)
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

        # The profiler's settings: read from WiredTiger once, not at every command, and a change
        # seen at once.
        def counting_cursors(table, counted):
            """`Storage._cursor` as it is, counting the cursors asked for on `table` into `counted`."""
            cursor_before = storage.Storage._cursor

            def cursor(self, name, *args, **kwargs):
                if name == table:
                    counted.append(name)
                return cursor_before(self, name, *args, **kwargs)

            return cursor_before, cursor

        profile_reads = []
        shipped_cursor, storage.Storage._cursor = counting_cursors(storage._PROFILE_TABLE, profile_reads)
        try:
            for i in range(50):
                db.orders.find_one({"_id": f"o{i}"})
        finally:
            storage.Storage._cursor = shipped_cursor
        if len(profile_reads) > 1:
            failures.append(f"50 commands read the profiler settings {len(profile_reads)} times")
        db.command("profile", 2)
        db.orders.find_one({"_id": "o7"})
        found_o7 = db.system.profile.count_documents({"command.filter._id": "o7"})
        was = db.command("profile", 0).get("was")
        db.orders.find_one({"_id": "o8"})
        found_o8 = db.system.profile.count_documents({"command.filter._id": "o8"})
        if (found_o7, was, found_o8) != (1, 2, 0):
            failures.append(
                f"the profiler at level 2 recorded {found_o7} of one find and reported level {was!r}; "
                f"after level 0, {found_o8} of one find"
            )

        # The catalog: read once a transaction, not at every step of it; what the command itself,
        # another connection or an aborted transaction changed is seen at once.
        client2 = pymongo.MongoClient(host, port, directConnection=True, retryWrites=False)
        try:
            db.people.create_index("owner")
            db.people.create_index("tags")
            db.people.create_index("at", expireAfterSeconds=3600)
            index_reads = []
            cursor_before, storage.Storage._cursor = counting_cursors(storage._IDX_TABLE, index_reads)
            try:
                for i in range(20):
                    db.people.insert_one({"_id": f"p{i}", "owner": "x", "tags": "t", "at": 1})
                    db.people.update_one({"_id": f"p{i}"}, {"$set": {"owner": "y"}})
            finally:
                storage.Storage._cursor = cursor_before
            if len(index_reads) > 80:
                failures.append(f"40 writes read the index catalog {len(index_reads)} times")
            db.people.insert_one({"_id": "a", "email": "a@x"})
            client2.selftest.people.create_index("email", unique=True, sparse=True)
            try:
                db.people.insert_one({"_id": "b", "email": "a@x"})
                failures.append("a unique index another connection made was not enforced")
            except pymongo.errors.DuplicateKeyError:
                pass
            made = db.command(
                "createIndexes",
                "people",
                indexes=[{"key": {"n": 1}, "name": "n_1", "unique": True, "sparse": True}, {"key": {"m": 1}, "name": "m_1"}],
            )
            if (made.get("numIndexesBefore"), made.get("numIndexesAfter")) != (5, 7):
                failures.append(f"createIndexes of two indexes answered {made!r}")
            db.people.insert_one({"_id": "n1", "n": 1})
            try:
                db.people.insert_one({"_id": "n2", "n": 1})
                failures.append("a unique index made a command earlier was not enforced")
            except pymongo.errors.DuplicateKeyError:
                pass
            # An array marks its index multikey inside the transaction; the abort takes it back.
            with client.start_session() as session:
                session.start_transaction()
                db.people.insert_one({"_id": "t1", "tags": ["a", "b"]}, session=session)
                db.people.insert_one({"_id": "t2", "tags": "c"}, session=session)
                session.abort_transaction()
            multikey = ["tags_1" in server.storage._multikey_index_names("selftest", "people")]
            db.people.insert_many([{"_id": "t3", "tags": "d"}, {"_id": "t4", "tags": ["e", "f"]}, {"_id": "t5", "tags": ["f"]}])
            multikey.append("tags_1" in server.storage._multikey_index_names("selftest", "people"))
            tagged = sorted(d["_id"] for d in db.people.find({"tags": "f"}))
            if multikey != [False, True] or tagged != ["t4", "t5"]:
                failures.append(f"the tags index was multikey {multikey!r} and found {tagged!r}")
            # Outside a transaction every read sees the latest commit: an index another connection
            # drops after a delete's hint was checked is not planned from.
            db.hinted.insert_many([{"_id": i, "x": i % 2, "y": i} for i in range(10)])
            db.hinted.create_index("x")
            db.hinted.create_index("y")
            shipped_delete = storage.Storage.delete_matching

            def delete_after_a_drop(self, *args, **kwargs):
                other = threading.Thread(target=server.storage.drop_index, args=("selftest", "hinted", "x_1"))
                other.start()
                other.join()
                return shipped_delete(self, *args, **kwargs)

            storage.Storage.delete_matching = delete_after_a_drop
            try:
                deleted = db.command("delete", "hinted", deletes=[{"q": {"x": 1}, "limit": 0, "hint": "y_1"}])
            finally:
                storage.Storage.delete_matching = shipped_delete
            left = db.hinted.count_documents({"x": 1})
            if deleted.get("n") != 5 or left:
                failures.append(f"a delete after its index was dropped removed {deleted.get('n')}, left {left}")
            # A collection made inside an aborted transaction is gone; one made by an insert is there.
            with client.start_session() as session:
                session.start_transaction()
                db.create_collection("fresh", session=session)
                db.fresh.insert_one({"_id": 1}, session=session)
                session.abort_transaction()
            db.implicit.insert_one({"_id": 1})
            names = db.list_collection_names()
            infos = {c["name"]: c for c in db.list_collections()}
            if "fresh" in names or "implicit" not in names or "uuid" not in infos["implicit"].get("info", {}):
                failures.append(f"after an aborted create and an insert, the collections were {sorted(names)!r}")
        finally:
            client2.close()

        # A transaction's session goes to the next one: WiredTiger's Python binding never frees a
        # session object, so a session opened for each transaction grew the heap without end.
        import gc

        def wt_sessions():
            return sum(1 for o in gc.get_objects() if type(o).__name__ == "Session")

        def transfer(session, i):
            db.accounts.update_one({"_id": "a"}, {"$inc": {"n": 1}}, upsert=True, session=session)
            db.ledger.insert_one({"_id": i}, session=session)

        before = wt_sessions()
        for i in range(100):
            with client.start_session() as session:
                session.with_transaction(lambda session: transfer(session, i))
        grown = wt_sessions() - before
        with client.start_session() as session:
            session.start_transaction()
            db.ledger.insert_one({"_id": "aborted"}, session=session)
            session.abort_transaction()

        def transfers(first):
            for i in range(first, first + 50):
                with client.start_session() as session:
                    session.with_transaction(lambda session: transfer(session, i))

        threads = [threading.Thread(target=transfers, args=(1000 * (k + 1),)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        total = db.accounts.find_one({"_id": "a"})["n"]
        entries = db.ledger.count_documents({})
        if grown > 10 or total != 300 or entries != 300:
            failures.append(
                f"100 transactions left {grown} more WiredTiger sessions; 300 transfers made "
                f"{total} and {entries} ledger entries"
            )

        # The sweeper still expires documents, and holds no snapshot once it has.
        # Around it, collections with indexes of their own, as a shop has: the sweeper's walks
        # of the catalog stop inside it rather than at its end.
        for name in ("carts", "sessions", "users"):
            db[name].create_index("expires_at", expireAfterSeconds=0)
            db[name].create_index("owner")
            db[name].insert_one({"_id": "live", "owner": "x", "expires_at": datetime.datetime(2999, 1, 1)})
        # Many live sessions, which the sweep must not read; an array expires by any date in it;
        # a value that is not a date never expires.
        db.sessions.insert_many(
            [{"_id": f"s{i}", "expires_at": datetime.datetime(2999, 1, 1)} for i in range(3000)]
            + [
                {"_id": "not-a-date", "expires_at": 5},
                {"_id": "old-in-array", "expires_at": [datetime.datetime(2999, 1, 1), datetime.datetime(2000, 1, 1)]},
            ]
        )
        swept = []
        storage.Storage._scan_docs = counting_scans("sessions", swept)
        try:
            db.sessions.insert_one({"_id": "old", "expires_at": datetime.datetime(2000, 1, 1)})
            deadline = time.monotonic() + 3 * sweep
            while db.sessions.count_documents({"_id": "old"}) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            storage.Storage._scan_docs = shipped_scan
        if db.sessions.count_documents({"_id": "old"}):
            failures.append(f"the TTL sweeper expired nothing in {3 * sweep:.0f} s")
        left = db.sessions.count_documents({})
        if left != 3002 or db.sessions.count_documents({"_id": {"$in": ["old-in-array", "live", "not-a-date"]}}) != 2:
            failures.append(f"the TTL sweeper left {left} sessions, not the 3,002 live ones")
        if len(swept) > 100:
            failures.append(f"a TTL sweep read {len(swept)} sessions to expire 2")
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
