"""A sink that writes to a local spool first and uploads to an object store in the
background: :class:`SpooledSink` over any :class:`~recorder.sinks.store.ObjectStore`.

Writes go to the spool (:mod:`recorder.sinks.spool`) and never wait for the network;
``create()`` touches only local disk, so a session start never waits on the store. One
uploader thread per sink sends each full ``part_size`` slice of a recording as a
multipart part while the session runs, and after ``close()`` the last (short) part and
the completion; a recording smaller than one part is one whole-object put.

Every store call runs on a helper thread under a hard deadline (``call_timeout``), so a
store that accepts connections and never answers, or trickles bytes, cannot hold the
uploader longer than that, and no store call ever runs on a thread that serves sessions.

Outages (refused, blackholed, slow, 5xx, throttled, a missing or emptied bucket): the
data stays in the spool, the uploader retries after ``retry_interval`` seconds, doubling
up to ``max_retry_interval``; one warning when it starts and one line when it ends;
sessions go on. When the spool reaches its cap (or the disk its low-water mark), writes
raise :class:`SpoolFullError`: the recorder pauses the sessions (back-pressure) until
uploads make room.

Configuration errors (credentials refused, access denied): logged as errors (once per
distinct error), reported by :meth:`status` as ``failing`` and to the listeners (the
gateway audits them); the data stays spooled and is uploaded when the configuration is
fixed, without a restart.

Confirmation: a spool copy is deleted only after the object is confirmed (a HEAD with
the same size and, where the store can say, the same tag as the spooled bytes) and a
line is appended to the upload ledger (:mod:`recorder.sinks.ledger`); an object that is
missing or different (a bucket emptied and recreated) is uploaded again from the spool.
:meth:`lost` lists ledger entries the store no longer has.

Several processes may share one spool (the gateway and its RDP workers): each uploads
the recordings it writes; the one that called :meth:`recover` also adopts, every few
seconds, entries whose owner died, and finishes them (a signed recovery trailer first:
:mod:`recorder.sinks.crash`).

Reading: ``names()/size()/read()`` see recordings still in the spool (live or waiting
for upload) from the local bytes, and the others from the store. A read-only sink
(``readonly=True``: the CLI and the player) takes no lock, starts no thread, never
writes, and works while a gateway runs.

Known limits: one uploader thread, so uploads go one part at a time (ample for
compressed terminal recordings); at most ``MAX_HANGING`` store calls may hang past
their deadline at once (then calls fail at once as an outage until one returns).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from recorder.errors import (
    SinkError,
    SinkFullError,
    StoreBucketMissing,
    StoreDenied,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
    StoreUploadLost,
)
from recorder.sinks.base import LostRecording, Sink, SinkStatus, SinkStream, validate_name
from recorder.sinks.crash import finish_spool_entry
from recorder.sinks.ledger import Ledger, LedgerEntry, lost
from recorder.sinks.spool import ReleasedError, Spool, SpoolEntry
from recorder.sinks.store import ObjectStore

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_PARTS = 10_000
MAX_HANGING = 4  # store calls past their deadline still running on helper threads
ADOPT_INTERVAL = 5.0  # seconds between looks for entries of dead processes (recovering sink)
PROBE_INTERVAL = 30.0  # an idle sink asks the store whether it is usable this often
FULL_MEMORY = 5.0  # seconds a refused write keeps the status at "spool full"
OUTAGE_FAILING_AFTER = 900.0  # an outage this long is reported as failing, not degraded
READ_CHUNK = 4 * 1024 * 1024


class Deadline:
    """Runs store calls on daemon helper threads, each under a hard deadline."""

    def __init__(self, max_hanging: int = MAX_HANGING) -> None:
        self.max_hanging = max_hanging
        self.stopping = threading.Event()  # set at close: waiting callers give up at once
        self._lock = threading.Lock()
        self._running = 0

    def call(self, timeout: float, what: str, fn: Callable[[], T]) -> T:
        """``fn()`` or StoreUnavailable when it did not return within ``timeout`` seconds.

        A call that misses its deadline is abandoned: it goes on on its helper thread
        until the store's own socket timeouts end it; its result is ignored.
        """
        with self._lock:
            if self._running >= self.max_hanging:
                raise StoreUnavailable(
                    f"{what}: {self._running} earlier storage calls are still hanging"
                )
            self._running += 1
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            try:
                box.append((True, fn()))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                box.append((False, exc))
            finally:
                with self._lock:
                    self._running -= 1
                done.set()

        threading.Thread(target=run, name="store-call", daemon=True).start()
        deadline = time.monotonic() + timeout
        while not done.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
            if self.stopping.is_set():
                raise StoreUnavailable(f"{what}: abandoned at shutdown")
            if time.monotonic() >= deadline:
                raise StoreUnavailable(f"{what}: no answer within {timeout:g} s")
        ok, value = box[0]
        if ok:
            return value  # type: ignore[no-any-return]
        raise value


class _SpooledStream(SinkStream):
    def __init__(self, sink: SpooledSink, entry: SpoolEntry) -> None:
        self._sink = sink
        self._entry = entry
        self._closed = False

    def write(self, data: bytes) -> None:
        self.write_parts((data,))

    def write_parts(self, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        if self._closed:
            raise SinkError(f"recording {self._entry.name} is closed")
        try:
            self._sink._spool.append_parts(self._entry, parts)
        except SinkFullError:
            self._sink._note_full()
            raise
        if self._entry.backlog >= self._entry.part_size:
            self._sink._wake()

    def flush(self) -> None:
        if self._closed:
            return
        self._sink._spool.sync(self._entry)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._sink._spool.finish(self._entry)
        self._sink._wake()

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._sink._spool.remove(self._entry)


class SpooledSink(Sink):
    """Recordings spooled locally and uploaded to an object store.

    Args:
        store: the remote store (its ``settings`` give part size, cap, retry timing).
        spool_dir: the local write-ahead spool (created 0700).
        ledger: where confirmed uploads are recorded (None: not recorded).
        min_free_bytes: low-water mark of the spool's filesystem.
        readonly: a reader's view (no lock, no thread, no write).

    Raises:
        SinkError: invalid settings, or the spool cannot be opened.
    """

    def __init__(
        self,
        store: ObjectStore,
        spool_dir: Path,
        *,
        ledger: Ledger | None = None,
        min_free_bytes: int = 0,
        readonly: bool = False,
    ) -> None:
        s = store.settings
        if s.part_size < s.min_part_size:
            raise SinkError(f"part_size {s.part_size} is below the store's minimum")
        self.store = store
        self.settings = s
        self.readonly = readonly
        self.location = s.location()
        self._ledger = ledger
        self._spool = Spool(
            spool_dir, s.spool_cap_bytes, min_free_bytes=min_free_bytes, readonly=readonly
        )
        self._deadline = Deadline()
        self._cond = threading.Condition()
        self._stop = False
        self._busy = False
        self._adopting = False
        self._last_adopt = 0.0
        self._last_probe = -PROBE_INTERVAL  # probe at once: report a bad config at start
        self._failures = 0
        self._next_attempt = 0.0
        self._outage: StoreUnavailable | None = None
        self._bucket_lost = False  # the bucket vanished: restart uploads when it is back
        self._outage_since: float | None = None  # unix time
        self._denied: StoreDenied | None = None
        self._denied_since: float | None = None
        self._full_at = -1e9  # monotonic time of the last refused write
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._confirmed = 0
        self._listeners: list[Callable[[SinkStatus], None]] = []
        self._reported_state = "ok"
        # names confirmed in the store (from the ledger, loaded by the uploader): create()
        # refuses them without asking the store
        self._known: set[str] | None = None
        self._thread: threading.Thread | None = None
        self._spool.scan()  # fills problems() with malformed entries at once
        if not readonly:
            self._thread = threading.Thread(target=self._run, name="uploader", daemon=True)
            self._thread.start()

    # -- helpers -----------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return self._deadline.call(self.settings.call_timeout, what, fn)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _note_full(self) -> None:
        """A write was refused for space (writer thread): tell listeners on the change."""
        now = time.monotonic()
        was_full = now - self._full_at < FULL_MEMORY
        self._full_at = now
        if not was_full:
            self._notify()

    def add_listener(self, cb: Callable[[SinkStatus], None]) -> None:
        """``cb(status)`` runs (on the uploader thread) whenever the state changes."""
        self._listeners.append(cb)

    def _notify(self) -> None:
        if not self._listeners:
            return
        st = self.status()
        if st.state == self._reported_state:
            return
        self._reported_state = st.state
        for cb in list(self._listeners):
            try:
                cb(st)
            except Exception:  # a listener must not stop the uploader
                log.exception("storage status listener failed")

    # -- Sink API ----------------------------------------------------------------

    def check(self) -> None:
        """Ask the store whether it is usable (for start-up diagnostics); raises SinkError."""
        self._call("check", self.store.check)

    def create(self, name: str) -> SinkStream:
        validate_name(name)
        if self.readonly:
            raise SinkError("recordings cannot be created through a read-only sink")
        known = self._known
        if self._spool.view(name) is not None or (known is not None and name in known):
            raise SinkError(f"recording {name} already exists")
        entry = self._spool.create(name, self.settings.part_size)
        return _SpooledStream(self, entry)

    def names(self) -> list[str]:
        out = {e.name for e in self._spool.scan() if not e.completed}
        try:
            out.update(o.name for o in self._call("list", lambda: list(self.store.list())))
        except StoreError as exc:
            raise SinkError(f"cannot list recordings in {self.location}: {exc}") from None
        return sorted(out)

    def size(self, name: str) -> int:
        validate_name(name)
        entry = self._spool.view(name)
        if entry is not None and not entry.completed:
            if entry.owned:
                return entry.size
            try:
                return (entry.path / "data").stat().st_size
            except FileNotFoundError:
                pass  # uploaded and removed meanwhile
        try:
            return self._call("head", lambda: self.store.head(name)).size
        except StoreNotFound:
            raise SinkError(f"no recording named {name}") from None
        except StoreError as exc:
            raise SinkError(f"cannot get the size of {name} in {self.location}: {exc}") from None

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        validate_name(name)
        if offset < 0 or (length is not None and length < 0):
            raise SinkError(f"invalid range {offset}+{length} for recording {name}")
        entry = self._spool.view(name)
        if entry is not None and not entry.completed:
            try:
                return entry.read(offset, length)
            except FileNotFoundError:
                pass  # uploaded and removed meanwhile: read it from the store
            except OSError as exc:
                raise SinkError(f"cannot read spooled recording {name}: {exc.strerror}") from exc
        if length == 0:
            return b""
        try:
            return self._call("get", lambda: self.store.get(name, offset, length))
        except StoreNotFound:
            raise SinkError(f"no recording named {name}") from None
        except StoreError as exc:
            raise SinkError(f"cannot read {name} from {self.location}: {exc}") from None

    def recover(self) -> list[str]:
        """Adopt every spool entry no live process owns and schedule it for upload.

        Entries not closed by their process are marked finished (their session is
        over). From now on this sink also adopts, every few seconds, the entries of
        processes that die while it runs. Returns at once; see :meth:`wait_idle`.
        """
        if self.readonly:
            return []
        handled = []
        for entry in self._spool.adopt():
            if not entry.finished:
                finish_spool_entry(self._spool, entry, self.recovery)
            handled.append(entry.name)
        for bad in self._spool.bad:
            log.error("spool entry not recovered (malformed): %s", bad)
        with self._cond:
            self._adopting = True
            self._last_adopt = time.monotonic()
            self._next_attempt = 0.0
            self._cond.notify_all()
        return sorted(handled)

    def lost(self) -> list[LostRecording]:
        if self._ledger is None:
            return []
        ledger = self._ledger.entries(self.location)
        if not ledger:
            return []
        try:
            stored = self._call("list", lambda: list(self.store.list()))
        except StoreError as exc:
            raise SinkError(f"cannot list recordings in {self.location}: {exc}") from None
        spooled = {e.name for e in self._spool.scan()}
        return [x for x in lost(ledger, ((o.name, o.size) for o in stored))
                if x.name not in spooled]

    def stored(self, name: str) -> bool:
        """Uploaded and confirmed: no longer in the spool, and the store has it."""
        if self._spool.view(name) is not None:
            return False
        try:
            self._call("head", lambda: self.store.head(name))
        except StoreError:
            return False
        return True

    def delete(self, name: str) -> None:
        """Delete a confirmed object (retention) and note it in the upload ledger, so
        that ``verify --all`` does not report it lost."""
        validate_name(name)
        if self._spool.view(name) is not None:
            raise SinkError(f"recording {name} is still in the spool: not deleted")
        try:
            self._call("delete", lambda: self.store.delete(name))
        except StoreError as exc:
            raise SinkError(f"cannot delete {name} from {self.location}: {exc}") from None
        if self._ledger is not None:
            self._ledger.forget(name, self.location)

    def problems(self) -> list[str]:
        """Spool entries that could not be loaded (malformed), with the reason."""
        return list(self._spool.bad)

    def pending(self) -> list[str]:
        """Names of recordings still in the spool (open, or not yet confirmed)."""
        return sorted(e.name for e in self._spool.scan())

    @property
    def backlog_bytes(self) -> int:
        """Bytes in the spool waiting for upload (what ``spool_cap_bytes`` bounds)."""
        return self._spool.backlog_bytes

    def status(self) -> SinkStatus:
        entries = self._spool.scan()
        st = SinkStatus(location=self.location)
        st.spool_bytes = sum(e.backlog for e in entries)
        st.spool_cap_bytes = self.settings.spool_cap_bytes
        st.spool_entries = len(entries)
        st.oldest_entry = min((e.created for e in entries), default=None)
        st.uploads_pending = sum(1 for e in entries if e.finished)
        st.confirmed = self._confirmed
        st.free_bytes = self._spool._free.free_bytes()
        st.min_free_bytes = self._spool._free.min_free
        st.problems = list(self._spool.bad)
        st.last_error, st.last_error_at = self._last_error, self._last_error_at
        if self.readonly:
            st.detail = "read-only view"
            return st
        full = time.monotonic() - self._full_at < FULL_MEMORY
        if self._denied is not None:
            st.state, st.since = "failing", self._denied_since
            st.detail = f"{self._denied}; recordings wait in the spool until this is fixed"
        elif full:
            st.state, st.since = "failing", time.time()
            st.detail = (
                "the spool is full (cap or disk low-water mark): recording sessions are "
                "paused until uploads make room"
            )
        elif self._outage is not None:
            since = self._outage_since or time.time()
            long = time.time() - since > OUTAGE_FAILING_AFTER
            st.state, st.since = ("failing" if long else "degraded"), since
            st.detail = (
                f"storage unreachable ({self._outage}); recordings wait in the spool and are "
                "uploaded when it answers"
            )
        elif st.problems:
            st.state = "degraded"
            st.detail = f"{len(st.problems)} malformed spool entries left in place"
        return st

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no upload work is left (every closed recording is confirmed).

        Returns:
            True when idle, False on timeout (e.g. the store still down).
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._busy or self._has_work():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def close(self, timeout: float = 30.0) -> None:
        """Stop the uploader (after its current store call) and release the spool.

        Unfinished work stays in the spool for the next :meth:`recover`; call
        :meth:`wait_idle` first to drain.
        """
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._deadline.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return
        self._spool.close()
        self.store.close()

    # -- the uploader ------------------------------------------------------------

    @staticmethod
    def _workable(entry: SpoolEntry) -> bool:
        return entry.completed or entry.finished or entry.backlog >= entry.part_size

    def _has_work(self) -> bool:
        return any(self._workable(e) for e in self._spool.entries())

    def _load_known(self) -> None:
        if self._ledger is None:
            self._known = set()
            return
        try:
            self._known = set(self._ledger.entries(self.location))
        except SinkError as exc:
            log.warning("%s", exc)
            self._known = set()

    def _run(self) -> None:
        self._load_known()
        while True:
            with self._cond:
                while not self._stop:
                    now = time.monotonic()
                    due = self._next_attempt - now
                    adopt_in = ADOPT_INTERVAL - (now - self._last_adopt)
                    probe_in = PROBE_INTERVAL - (now - self._last_probe)
                    troubled = self._outage is not None or self._denied is not None
                    if due <= 0 and (self._has_work() or troubled or probe_in <= 0):
                        break
                    if self._adopting and adopt_in <= 0:
                        break
                    waits = [probe_in if due <= 0 else due]
                    if self._adopting:
                        waits.append(adopt_in)
                    self._cond.wait(max(0.01, min(waits)))
                if self._stop:
                    return
                self._busy = True
            try:
                self._round()
            except Exception:  # a bug must not kill the uploader silently
                log.exception("uploader error; retrying")
                self._backoff()
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _round(self) -> None:
        now = time.monotonic()
        if self._adopting and now - self._last_adopt >= ADOPT_INTERVAL:
            self._last_adopt = now
            for entry in self._spool.adopt():
                log.warning("adopting spooled recording %s left by a stopped process", entry.name)
                if not entry.finished:
                    finish_spool_entry(self._spool, entry, self.recovery)
        if self._next_attempt > time.monotonic():
            return
        work = [e for e in self._spool.entries() if self._workable(e)]
        try:
            if self._bucket_lost:
                self._call("check", self.store.check)  # raises while it is still missing
                self._restart_uploads()
            if not work:
                troubled = self._outage is not None or self._denied is not None
                if troubled or time.monotonic() - self._last_probe >= PROBE_INTERVAL:
                    self._last_probe = time.monotonic()
                    self._call("check", self.store.check)
                    self._healthy()
                return
            for entry in work:  # one step (at most one part) each, round-robin
                if self._stop:
                    return
                try:
                    self._advance(entry)
                except ReleasedError as exc:
                    self._give_up(entry, str(exc))
                    continue
                self._healthy()
        except StoreUnavailable as exc:
            if not self._stop:  # a call abandoned at shutdown is no outage
                self._on_outage(exc)
        except StoreDenied as exc:
            self._on_denied(exc)
        except StoreError as exc:  # e.g. an object reported missing where it cannot be
            self._error(str(exc))
            self._backoff()
        except SinkError as exc:  # local spool I/O; keep the entry, try again later
            self._error(f"upload: {exc}")
            log.error("upload: %s", exc)
            self._backoff()

    def _advance(self, entry: SpoolEntry) -> None:
        if entry.completed:
            self._confirm(entry)
            return
        if entry.recovered:
            self._reconcile(entry)
            entry.recovered = False
        name = entry.name
        try:
            if entry.upload_id is None:
                if entry.finished and entry.size < entry.part_size:
                    self._put_whole(entry)
                    return
                new_id = self._call("begin upload", lambda: self.store.begin(name))
                self._spool.set_upload(entry, new_id)
            if entry.backlog >= entry.part_size:
                self._upload_part(entry, entry.part_size)
            elif entry.finished:
                if entry.backlog > 0:
                    self._upload_part(entry, entry.backlog)
                upload_id = entry.upload_id
                assert upload_id is not None
                parts = list(entry.parts)
                self._call("complete", lambda: self.store.complete(name, upload_id, parts))
                self._spool.mark_completed(entry)
                self._confirm(entry)
        except StoreUploadLost as exc:
            if entry.finished and entry.backlog == 0 and self._confirm(entry, quiet=True):
                return  # it had been completed (a call past its deadline, or a crash)
            log.warning(
                "the store lost the upload of %s (%s); restarting it from the spool", name, exc
            )
            self._spool.set_upload(entry, None)

    def _upload_part(self, entry: SpoolEntry, nbytes: int) -> None:
        if len(entry.parts) >= MAX_PARTS:
            raise StoreDenied(f"recording {entry.name} needs more than {MAX_PARTS} parts")
        number = len(entry.parts) + 1
        data = entry.read(entry.uploaded, nbytes)
        if len(data) != nbytes:
            raise SinkError(f"spool of {entry.name} is shorter than recorded")
        md5 = hashlib.md5(data, usedforsecurity=False).digest()
        upload_id = entry.upload_id
        assert upload_id is not None
        tag = self._call(
            f"upload part {number} of {entry.name}",
            lambda: self.store.put_part(entry.name, upload_id, number, data, md5),
        )
        self._spool.add_part(entry, number, tag, nbytes, md5.hex())
        if not entry.finished and self._spool.under_pressure():
            released = self._spool.release_uploaded(entry)
            if released:
                log.warning(
                    "spool disk nearly full: released %d uploaded bytes of the live recording "
                    "%s (readable from the store once it is complete)", released, entry.name
                )

    def _put_whole(self, entry: SpoolEntry) -> None:
        data = entry.read(0, entry.size)
        md5 = hashlib.md5(data, usedforsecurity=False).digest()
        self._call(f"put {entry.name}", lambda: self.store.put(entry.name, data, md5))
        self._spool.mark_completed(entry)
        self._confirm(entry)

    def _digests(self, entry: SpoolEntry) -> tuple[str, list[bytes], bool]:
        """SHA-256 of the whole spooled recording and the MD5 of each uploaded part.

        When the start was released from the spool (disk pressure), the part MD5s come
        from the state and the SHA-256 is unknown (``""``).
        """
        multipart = bool(entry.parts)
        if entry.punched:
            try:
                md5s = [bytes.fromhex(entry.md5s[n]) for n, _ in entry.parts]
            except (KeyError, ValueError) as exc:
                raise SinkError(f"spool state of {entry.name} lacks part digests") from exc
            return "", md5s, multipart
        sha = hashlib.sha256()
        step = entry.part_size if multipart else READ_CHUNK
        md5s = []
        whole = hashlib.md5(usedforsecurity=False)
        offset = 0
        while offset < entry.size:
            data = entry.read(offset, min(step, entry.size - offset))
            if not data:
                break
            sha.update(data)
            if multipart:
                md5s.append(hashlib.md5(data, usedforsecurity=False).digest())
            else:
                whole.update(data)
            offset += len(data)
        if offset != entry.size:
            raise SinkError(f"spool of {entry.name} is shorter than recorded")
        return sha.hexdigest(), (md5s if multipart else [whole.digest()]), multipart

    def _give_up(self, entry: SpoolEntry, why: str) -> None:
        """An entry that cannot be uploaded any more: move it aside, loudly."""
        target = self._spool.quarantine(entry)
        self._error(f"{entry.name}: {why}")
        log.error("recording %s cannot be uploaded: %s; its spooled bytes are kept in %s",
                  entry.name, why, target)

    def _confirm(self, entry: SpoolEntry, quiet: bool = False) -> bool:
        """HEAD the object; delete the spool copy if it matches, else upload it again."""
        name = entry.name
        sha, md5s, multipart = self._digests(entry)
        try:
            info = self._call(f"confirm {name}", lambda: self.store.head(name))
        except StoreNotFound:
            if not quiet:
                log.warning(
                    "recording %s is missing from %s after its upload (bucket emptied?); "
                    "uploading it again from the spool", name, self.location
                )
            self._spool.set_upload(entry, None)
            return False
        expected = self.store.expected_etag(md5s, multipart)
        if info.size != entry.size or (expected is not None and info.etag != expected):
            if not quiet:
                log.error(
                    "recording %s in %s differs from the spooled copy (%d bytes, tag %s; "
                    "spooled %d bytes, tag %s); uploading it again",
                    name, self.location, info.size, info.etag, entry.size, expected,
                )
            self._spool.set_upload(entry, None)
            return False
        if self._ledger is not None:
            self._ledger.record(
                LedgerEntry(name, entry.size, info.etag, sha, self.location, time.time())
            )
        self._spool.remove(entry)
        if self._known is not None:
            self._known.add(name)
        self._confirmed += 1
        log.info("recording %s stored and confirmed in %s", name, self.location)
        return True

    def _reconcile(self, entry: SpoolEntry) -> None:
        """Trust only the parts the store really has, in order, with the right size/tag."""
        upload_id = entry.upload_id
        if upload_id is None or entry.completed:
            return
        try:
            have = self._call(
                f"list parts of {entry.name}",
                lambda: self.store.list_parts(entry.name, upload_id),
            )
        except StoreUploadLost:
            self._spool.set_upload(entry, None)
            return
        parts: list[tuple[int, str]] = []
        known = dict(entry.parts)
        offset = 0
        while offset + entry.part_size <= entry.size:
            number = len(parts) + 1
            got = have.get(number)
            if got is None or got[1] != entry.part_size:
                break
            if offset < entry.punched:  # released from the spool: trust what we stored
                if known.get(number) != got[0]:
                    break
            else:
                md5 = hashlib.md5(entry.read(offset, entry.part_size), usedforsecurity=False)
                if self.store.part_matches(got[0], md5.digest()) is False:
                    break
            parts.append((len(parts) + 1, got[0]))
            offset += entry.part_size
        self._spool.set_parts(entry, parts, offset)

    # -- outage bookkeeping --------------------------------------------------------

    def _error(self, text: str) -> None:
        self._last_error = text
        self._last_error_at = time.time()

    def _backoff(self) -> None:
        s = self.settings
        delay = min(s.retry_interval * (2 ** min(self._failures, 16)), s.max_retry_interval)
        self._failures += 1
        with self._cond:
            self._next_attempt = time.monotonic() + delay

    def _restart_uploads(self) -> None:
        """The bucket is back (maybe recreated empty): multipart uploads begun before it
        vanished are gone, so every one is restarted from the spooled bytes."""
        self._bucket_lost = False
        restarted = 0
        for entry in self._spool.entries():
            if entry.upload_id is not None and not entry.completed:
                try:
                    self._spool.set_upload(entry, None)
                except ReleasedError as exc:
                    self._give_up(entry, str(exc))
                    continue
                restarted += 1
        log.warning("the bucket of %s is back; restarting %d multipart uploads from the spool",
                    self.location, restarted)

    def _on_outage(self, exc: StoreUnavailable) -> None:
        if isinstance(exc, StoreBucketMissing):
            self._bucket_lost = True
        self._error(str(exc))
        if self._outage is None:
            self._outage_since = time.time()
            log.warning(
                "storage %s unreachable: %s; spooling locally in %s and retrying every "
                "%.1f-%.1f s",
                self.store.describe(),
                exc,
                self._spool.directory,
                self.settings.retry_interval,
                self.settings.max_retry_interval,
            )
        self._outage = exc
        self._backoff()
        self._notify()

    def _on_denied(self, exc: StoreDenied) -> None:
        self._error(str(exc))
        if self._denied is None or str(self._denied) != str(exc):
            log.error(
                "storage %s refused us: %s; recordings are kept in the local spool %s until "
                "this is fixed (retrying every %.0f s)",
                self.store.describe(),
                exc,
                self._spool.directory,
                self.settings.max_retry_interval,
            )
            self._denied_since = time.time()
        self._denied = exc
        with self._cond:
            self._failures = 16
            self._next_attempt = time.monotonic() + self.settings.max_retry_interval
        self._notify()

    def _healthy(self) -> None:
        changed = False
        if self._outage is not None:
            log.warning(
                "storage %s reachable again after %.1f s; uploading %d spooled bytes",
                self.store.describe(),
                time.time() - (self._outage_since or time.time()),
                self._spool.backlog_bytes,
            )
            self._outage = None
            self._outage_since = None
            changed = True
        if self._denied is not None:
            log.warning("storage %s accepts uploads again", self.store.describe())
            self._denied = None
            self._denied_since = None
            changed = True
        self._failures = 0
        self._next_attempt = 0.0
        if changed:
            self._notify()
