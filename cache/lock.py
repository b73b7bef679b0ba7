"""One writer per cache: an exclusive lease object `<cache>.lock` beside the cache (outside the Zarr hierarchy,
so no Zarr reader ever sees it).

The lease is created with an exclusive create that writes its whole content at once (on a local disk a complete
temporary file hard-linked to the lease's name, which fails if it exists; on object stores a conditional PUT, where
the fsspec backend supports it) and holds the writer's identity: a random token, host, process, start time and a
heartbeat that a background thread renews every HEARTBEAT seconds, again whole (a temporary file renamed over it;
one PUT on object stores), so a reader never sees a lease half written. A second writer, on this machine or any
other, finds the object and is refused before it writes anything, with the holder's identity in the message.
A lease whose heartbeat is older than LEASE seconds is stale (its writer died without releasing it) and is taken
over, and so is one whose writer ran on this machine and no longer exists; `--force-unlock` takes over at once.
A lease that cannot be read (emptied or garbled by something else) is held by an unknown writer: refused with one
line, and stale once the object itself is older than LEASE. Every shard commit first checks that the lease still
carries the writer's token, so a writer that lost its lease stops instead of mixing its shards into another run's
cache. Errors of the store (a read-only folder, an unreachable endpoint, no credentials) are one line each.

The rule this gives: one `precompute` at a time per cache, whatever the splits. Two runs with identical
parameters on different splits are refused too: they would share the root metadata and the split groups are
created while the lease is held, so running them one after the other is the safe way.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import threading
import time
import uuid

from oczss.cache.location import filesystem, is_local, reaching
from oczss.errors import OCZSSError

log = logging.getLogger(__name__)
LEASE = 600.0
HEARTBEAT = 60.0


def lock_url(url: str) -> str:
    return url.rstrip("/") + ".lock"


class WriterLock:
    """The exclusive writer lease of the cache at `url`; a context manager. `token` identifies this writer."""

    def __init__(self, url: str, force: bool = False, lease: float = LEASE, heartbeat: float = HEARTBEAT):
        self.url, self.force, self.lease, self.heartbeat = url, force, lease, heartbeat
        self.token = uuid.uuid4().hex
        self.fs, self.path = filesystem(lock_url(url))
        self.local = is_local(url)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "WriterLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        with reaching(lock_url(self.url)):
            if self.local:
                os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            if not self._create():
                holder = read_holder(self.fs, self.path)
                age = _age(self.fs, self.path, holder)
                if not (self.force or holder is None or (age is not None and age > self.lease)
                        or _dead_here(holder)):
                    raise self._held(holder, age)
                _remove_if(self.fs, self.path, holder)
                if not self._create():
                    raise OCZSSError(f"cache {self.url}: another run took the lock at the same moment "
                                     f"({_who(read_holder(self.fs, self.path))}); nothing was written")
        self._thread = threading.Thread(target=self._beat, name="oczss-cache-lease", daemon=True)
        self._thread.start()

    def _held(self, holder: dict, age: float | None) -> OCZSSError:
        if not holder:
            return OCZSSError(
                f"cache {self.url}: its writer lock {lock_url(self.url)} cannot be read (empty, or not written by "
                f"oczss), so another run may hold it" + (f" (last written {age:.0f} s ago)" if age is not None else "")
                + f". If no other run writes this cache, pass --force-unlock; otherwise it counts as abandoned "
                f"{self.lease:.0f} s after it was last written")
        return OCZSSError(
            f"cache {self.url} is being written by another run: {_who(holder)}, heartbeat {age:.0f} s ago. "
            f"Wait for it to finish; if that run is dead, its lease expires {self.lease - age:.0f} s from now, "
            f"or pass --force-unlock")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with reaching(lock_url(self.url)):
            holder = read_holder(self.fs, self.path)
            if holder and holder.get("token") == self.token:
                self.fs.rm(self.path)

    def _body(self, started: float | None = None) -> bytes:
        now = time.time()
        return json.dumps({"token": self.token, "host": socket.gethostname(), "pid": os.getpid(),
                           "started": started or now, "heartbeat": now,
                           "started_at": datetime.datetime.fromtimestamp(started or now).isoformat(
                               timespec="seconds")}).encode()

    def _create(self) -> bool:
        """Exclusive create of the whole lease; False if the object exists."""
        self._started = time.time()
        body = self._body(self._started)
        if self.local:
            return _link_new(self.path, body, self.token)
        try:
            with self.fs.open(self.path, "xb") as f:
                f.write(body)
            return True
        except FileExistsError:
            return False
        except (NotImplementedError, ValueError, TypeError) as e:
            raise OCZSSError(f"cache {self.url}: its store cannot create {lock_url(self.url)} exclusively "
                             f"({type(e).__name__}: {e}); the single-writer lock needs that (for S3: a recent s3fs "
                             f"and a store with conditional writes)") from None

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                holder = read_holder(self.fs, self.path)
                if not holder or holder.get("token") != self.token:
                    return  # lost: shard commits will refuse (check_holder)
                body = self._body(self._started)
                if self.local:
                    _replace(self.path, body, self.token)
                else:
                    self.fs.pipe(self.path, body)  # one PUT: readers see the old lease or the new one
            except Exception as e:  # noqa: BLE001 - a failed renewal is retried; a lost lease stops the commits
                log.debug("renewing the writer lease %s failed: %s: %s", self.path, type(e).__name__, e)


def _link_new(path: str, body: bytes, token: str) -> bool:
    """Local exclusive create with its whole content: a complete temporary file hard-linked to `path`."""
    tmp = f"{path}.{token}.tmp"
    with open(tmp, "wb") as f:
        f.write(body)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # a filesystem without hard links: O_EXCL, the content written right after
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        return True
    finally:
        os.unlink(tmp)


def _replace(path: str, body: bytes, token: str) -> None:
    """Local rewrite of the whole lease: a temporary file renamed over it."""
    tmp = f"{path}.{token}.tmp"
    with open(tmp, "wb") as f:
        f.write(body)
    os.replace(tmp, path)


def read_holder(fs, path: str) -> dict | None:
    """The lease's content, None if there is none, {} if it cannot be read as a lease."""
    try:
        holder = json.loads(fs.cat(path))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        return {}
    return holder if isinstance(holder, dict) and isinstance(holder.get("token"), str) else {}


def _age(fs, path: str, holder: dict | None) -> float | None:
    """Seconds since the lease's heartbeat; for an unreadable lease, since the object was last written (None if the
    store cannot say)."""
    if holder:
        try:
            return time.time() - float(holder.get("heartbeat", 0))
        except (TypeError, ValueError):
            pass
    try:
        return time.time() - fs.modified(path).timestamp()
    except (FileNotFoundError, NotImplementedError, AttributeError, OSError):
        return None


def check_holder(url: str, token: str) -> None:
    """Refuse to commit a shard unless the cache's lease still carries `token`."""
    with reaching(lock_url(url)):
        fs, path = filesystem(lock_url(url))
        holder = read_holder(fs, path)
    if not holder or holder.get("token") != token:
        raise OCZSSError(f"cache {url}: this run no longer holds the writer lock ({lock_url(url)}: "
                         f"{_who(holder) if holder is not None else 'gone'}); stopped before committing another "
                         f"shard")


def force_unlock(url: str) -> dict | None:
    """Remove the lease whoever holds it; returns what it held."""
    with reaching(lock_url(url)):
        fs, path = filesystem(lock_url(url))
        holder = read_holder(fs, path)
        if holder is not None:
            fs.rm(path)
    return holder


def _remove_if(fs, path: str, holder: dict | None) -> None:
    """Remove the lease only if it still holds what was read (another taker may have replaced it)."""
    if holder is None:
        return
    current = read_holder(fs, path)
    if current == holder:
        try:
            fs.rm(path)
        except FileNotFoundError:
            pass


def _dead_here(holder: dict) -> bool:
    """Whether the holder ran on this machine and its process is gone (a SIGKILL or a crash left the lease)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _who(holder: dict | None) -> str:
    if not holder:
        return "an unreadable lock"
    return f"host {holder.get('host')} pid {holder.get('pid')} since {holder.get('started_at')}"
