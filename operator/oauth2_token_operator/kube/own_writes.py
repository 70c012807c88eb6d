"""The operator's own writes of one object, until the watch shows them.

The newest copy of an object: the watch's, or the one our own write returned. Right
after the operator writes a Secret or a status, the watch may still hold the previous
version for a few milliseconds; deciding on it would undo or repeat the write. So the
reply of each write is remembered until the watch catches up.

The watch often shows a write before the write's own reply is back (the reply comes
through a worker thread); such a reply is not kept at all, or it would stay until the
object's next reconcile (renewal time): two bodies per request, held for nothing.

`resourceVersion` is opaque by API convention, but every etcd-backed API server uses
the etcd revision, an integer; when either version is not one, the watch's copy wins.

Our own writes coming back through the watch (echoes): every status patch and Secret
write comes back as a watch event, and each event reconciled the request again to find
nothing to do: two reconciles per renewal, a sixth of the operator's CPU per renewal. A
write is remembered by the `resourceVersion` its reply carries, and forgotten when its
event arrives: an event carrying exactly that version is an echo. The caller remembers
only a reply that shows nothing the writing reconcile did not know (`changed_only_status`
for a status patch: a merge patch lands on top of whatever another writer did meanwhile,
and kopf may deliver only the newest of two quick events). Any other version is not an
echo.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

from oauth2_token_operator.kube.api import version_of

Body = Mapping[str, Any]
Lookup = Callable[[Any], Body | None]


def _version(body: Body | None) -> int | None:
    return None if body is None else version_of(body)


class OwnWrites:
    """What the operator wrote to one object (a request's status, or its Secret) that
    the watch has not shown yet, and the version whose watch event is an echo."""

    __slots__ = ("echo", "written")

    def __init__(self) -> None:
        self.written: Body | None = None
        """Our last write's reply, while the watch is behind it."""
        self.echo: str | None = None
        """The `resourceVersion` of our last write whose event has not come back."""

    def wrote(self, reply: Body, current: Body | None, *, echo: bool) -> None:
        """Our write's `reply`; `current`: the watch's copy now (the index), if any.
        `echo`: the reply shows nothing the writing reconcile did not know, so its
        watch event will be an echo."""
        if current is not None and _caught_up(reply, current):
            self.written = None  # the watch already shows it, or newer
        else:
            self.written = reply
        if echo:
            version = reply.get("metadata", {}).get("resourceVersion")
            self.echo = version if isinstance(version, str) and version else None

    def observed(self, body: Body) -> None:
        """A watch event of the object (deletions included): forget our copy once the
        watch has reached it."""
        if self.written is not None and _caught_up(self.written, body):
            self.written = None

    def newest(self, watched: Body | None, current: Body | None) -> Body | None:
        """The newest of `watched` (a copy the caller may have taken a while ago, e.g.
        before waiting for the object's lock), the watch's `current` copy and our last
        write."""
        watched = _newer(watched, current)
        written = self.written
        if written is None:
            return watched
        if watched is not None and _caught_up(written, watched):
            self.written = None
            return watched
        return written

    def came_back(self, watched: Body) -> bool:
        """Is `watched` our last write, unchanged? (Then it is forgotten.)"""
        if self.echo is None or watched.get("metadata", {}).get("resourceVersion") != self.echo:
            return False
        self.echo = None
        return True


class Freshness:
    """`OwnWrites` of many objects by key, for a kind with no record of its own (the
    OAuth2Clients' status writes)."""

    def __init__(self, watched: Lookup | None = None) -> None:
        """`watched(key)`: the watch's current copy (the index), if any."""
        self._written: dict[Hashable, OwnWrites] = {}
        self._watched = watched

    def _current(self, key: Hashable) -> Body | None:
        return self._watched(key) if self._watched is not None else None

    def wrote(self, key: Hashable, body: Body) -> None:
        writes = OwnWrites()
        writes.wrote(body, self._current(key), echo=False)
        if writes.written is None:
            self._written.pop(key, None)
        else:
            self._written[key] = writes

    def forget(self, key: Hashable) -> None:
        self._written.pop(key, None)

    def observed(self, key: Hashable, body: Body) -> None:
        writes = self._written.get(key)
        if writes is not None:
            writes.observed(body)
            if writes.written is None:
                del self._written[key]

    def newest(self, key: Hashable, watched: Body | None) -> Body | None:
        writes = self._written.get(key)
        current = self._current(key)
        if writes is None:
            return _newer(watched, current)
        newest = writes.newest(watched, current)
        if writes.written is None:
            del self._written[key]
        return newest


def _newer(watched: Body | None, current: Body | None) -> Body | None:
    """`current` if it is later than `watched`, else `watched`."""
    if watched is not None and current is not None and _later(current, watched):
        return current
    return watched


def _caught_up(written: Body, watched: Body) -> bool:
    mine, theirs = _version(written), _version(watched)
    return mine is None or theirs is None or theirs >= mine


def _later(body: Body, than: Body) -> bool:
    mine, theirs = _version(body), _version(than)
    return mine is not None and theirs is not None and mine > theirs


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
