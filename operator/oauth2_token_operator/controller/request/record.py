"""Everything the operator remembers in memory about one request between reconciles,
in one record whose lifetime is the request's: created on its first reconcile, dropped
whole by one `RequestRecords.forget` when it is finalized.

None of it is in the request's status: a failed API write's backoff, the end of the
server's `Retry-After`, the server its token requests went to, its write budget
(`write_guard`), and the operator's own writes of its status and of its Secret until
the watch shows them (`own_writes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from oauth2_token_operator.controller.request.write_guard import WriteBudget, WriteGuard
from oauth2_token_operator.controller.shared.context import Body
from oauth2_token_operator.controller.shared.ledger import RequestKey
from oauth2_token_operator.kube.own_writes import OwnWrites
from oauth2_token_operator.policies.backoff import ApiBackoff

SecretKey = tuple[str, str]
"""A Secret's (namespace, name)."""


@dataclass(slots=True, eq=False)
class RequestRecord:
    key: RequestKey
    writes: WriteBudget
    """Its Secret and status writes, held back past the budget (a bug; see `write_guard`)."""
    api_backoff: ApiBackoff | None = None
    """After a failed API write (`RequestReconciler._retry_after_api_error`)."""
    server_asked_until: float | None = None
    """When the server's `Retry-After` of its last failed issuance ends. It holds for a
    new spec too (see `backoff.backoff_until`)."""
    server: str | None = None
    """The server (its token endpoint) its token requests last went to."""
    status: OwnWrites = field(default_factory=OwnWrites)
    """Our status writes, until the watch shows them and their events come back."""
    secret: OwnWrites = field(default_factory=OwnWrites)
    """Our writes of the Secret `secret_name`, likewise."""
    secret_name: str | None = None
    """The Secret `secret` is about (a new spec may name another)."""

    def secret_key(self) -> SecretKey | None:
        return None if self.secret_name is None else (self.key[0], self.secret_name)

    def wrote_secret(self, name: str, reply: Body, current: Body | None) -> None:
        """Our write of the Secret `name` (a create, or a replace guarded by the
        resourceVersion read: the reply is what this reconcile wrote, nobody else's
        change, so its event is an echo); `current`: the watch's copy now."""
        if name != self.secret_name:
            self.secret, self.secret_name = OwnWrites(), name
        self.secret.wrote(reply, current, echo=True)

    def newest_secret(self, name: str, watched: Body | None) -> Body | None:
        """The newest of the watch's copy of the Secret `name` and our last write."""
        if name != self.secret_name:
            return watched
        return self.secret.newest(watched, watched)

    def secret_came_back(self, name: str, watched: Body) -> bool:
        """Is `watched` our last write of the Secret `name`, unchanged?"""
        return name == self.secret_name and self.secret.came_back(watched)


class RequestRecords:
    """The records of one reconciler's requests."""

    def __init__(self, guard: WriteGuard) -> None:
        self._guard = guard
        self._records: dict[RequestKey, RequestRecord] = {}
        self._unseen_secrets: dict[SecretKey, RequestKey] = {}
        """The Secrets with a write of ours the watch has not shown yet, to their
        requests: a Secret's event reaches that record even if the Secret no longer
        names its owner (someone removed the ownerReference)."""

    def of(self, key: RequestKey) -> RequestRecord:
        """The request's record, created on first use."""
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = RequestRecord(key, self._guard.budget(key))
        return record

    def get(self, key: RequestKey) -> RequestRecord | None:
        return self._records.get(key)

    def forget(self, key: RequestKey) -> None:
        """The request is gone: everything remembered about it goes."""
        record = self._records.pop(key, None)
        secret = None if record is None else record.secret_key()
        if secret is not None and self._unseen_secrets.get(secret) == key:
            del self._unseen_secrets[secret]

    def __len__(self) -> int:
        return len(self._records)

    def request_observed(self, key: RequestKey, body: Body) -> None:
        """A watch event of the request: our status write it shows is forgotten."""
        record = self._records.get(key)
        if record is not None:
            record.status.observed(body)

    def track_secret(self, record: RequestRecord) -> None:
        """After a reconcile: if its Secret write is not in the watch yet, the Secret's
        next event is routed to the record (`secret_observed`)."""
        secret = record.secret_key()
        if secret is not None and record.secret.written is not None:
            self._unseen_secrets[secret] = record.key

    def secret_observed(self, secret: SecretKey, body: Body, owners: list[RequestKey]) -> None:
        """A watch event of a Secret (deletions included), `owners` the requests it names
        as its controller: the write of ours it shows is forgotten."""
        tracked = self._unseen_secrets.pop(secret, None)
        for key in owners if tracked is None or tracked in owners else [*owners, tracked]:
            record = self._records.get(key)
            if record is not None and record.secret_name == secret[1]:
                record.secret.observed(body)
                self.track_secret(record)
