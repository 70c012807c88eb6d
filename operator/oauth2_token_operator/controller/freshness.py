"""The newest copy of an object: the watch's, or the one our own write returned.

Right after the operator writes a Secret or a status, the watch may still hold the
previous version for a few milliseconds; deciding on it would undo or repeat the
write. So the reply of each write is remembered until the watch catches up.

The watch often shows a write before the write's own reply is back (the reply comes
through a worker thread); such a reply is not kept at all, or it would stay until the
object's next reconcile (renewal time): two bodies per request, held for nothing.

`resourceVersion` is opaque by API convention, but every etcd-backed API server uses
the etcd revision, an integer; when either version is not one, the watch's copy wins.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

from oauth2_token_operator.kube.api import version_of

Body = Mapping[str, Any]
Lookup = Callable[[Any], Body | None]


def _version(body: Body | None) -> int | None:
    return None if body is None else version_of(body)


class Freshness:
    def __init__(self, watched: Lookup | None = None) -> None:
        """`watched(key)`: the watch's current copy (the index), if any."""
        self._written: dict[Hashable, Body] = {}
        self._watched = watched

    def wrote(self, key: Hashable, body: Body) -> None:
        current = self._watched(key) if self._watched is not None else None
        if current is not None and _caught_up(body, current):
            self._written.pop(key, None)  # the watch already shows it, or newer
            return
        self._written[key] = body

    def forget(self, key: Hashable) -> None:
        self._written.pop(key, None)

    def observed(self, key: Hashable, body: Body) -> None:
        """A watch event for `key` (deletions included): forget our copy once the watch
        has reached it."""
        written = self._written.get(key)
        if written is not None and _caught_up(written, body):
            del self._written[key]

    def newest(self, key: Hashable, watched: Body | None) -> Body | None:
        """The newest of `watched` (a copy the caller may have taken a while ago, e.g.
        before waiting for the object's lock), the watch's current copy and our last
        write."""
        current = self._watched(key) if self._watched is not None else None
        if watched is not None and current is not None and _later(current, watched):
            watched = current
        written = self._written.get(key)
        if written is None:
            return watched
        if watched is not None and _caught_up(written, watched):
            del self._written[key]
            return watched
        return written


def _caught_up(written: Body, watched: Body) -> bool:
    mine, theirs = _version(written), _version(watched)
    return mine is None or theirs is None or theirs >= mine


def _later(body: Body, than: Body) -> bool:
    mine, theirs = _version(body), _version(than)
    return mine is not None and theirs is not None and mine > theirs


class Echoes:
    """Our own writes coming back through the watch.

    Every status patch and Secret write comes back as a watch event, and each event
    reconciled the request again to find nothing to do: two reconciles per renewal, a
    sixth of the operator's CPU per renewal. A write is remembered here by the
    `resourceVersion` its reply carries, and forgotten when its event arrives: an event
    carrying exactly that version is an echo. The caller remembers only a reply that
    shows nothing the writing reconcile did not know (`changed_only_status` for a status
    patch: a merge patch lands on top of whatever another writer did meanwhile, and
    kopf may deliver only the newest of two quick events). Any other version is not an
    echo.
    """

    def __init__(self) -> None:
        self._versions: dict[Hashable, str] = {}

    def wrote(self, key: Hashable, reply: Body) -> None:
        version = reply.get("metadata", {}).get("resourceVersion")
        if isinstance(version, str) and version:
            self._versions[key] = version
        else:
            self._versions.pop(key, None)

    def forget(self, key: Hashable) -> None:
        self._versions.pop(key, None)

    def came_back(self, key: Hashable, watched: Body) -> bool:
        """Is `watched` our last write to `key`, unchanged? (Then it is forgotten.)"""
        version = self._versions.get(key)
        if version is None or watched.get("metadata", {}).get("resourceVersion") != version:
            return False
        del self._versions[key]
        return True


_RECONCILED_METADATA = (
    "generation",
    "labels",
    "annotations",
    "finalizers",
    "deletionTimestamp",
    "uid",
)
"""What a reconcile reads from a request's metadata."""


def changed_only_status(read: Body, reply: Body) -> bool:
    """Does the reply to our status patch of `read` differ from it only in status (and
    bookkeeping)? Not if anyone changed its spec, labels, annotations or finalizers, or
    began deleting it, between our read and our write."""
    before, after = read.get("metadata", {}), reply.get("metadata", {})
    return read.get("spec") == reply.get("spec") and all(
        before.get(field) == after.get(field) for field in _RECONCILED_METADATA
    )
