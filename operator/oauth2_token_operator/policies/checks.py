"""Whether a request needs a new token, a rewritten Secret, and whether it is Ready.

As in cert-manager's certificate policies: each check is a pure function of one
`Facts` snapshot that returns a `Verdict` (a reason and a message) when it finds
something, and a chain returns the first verdict. The trigger chain, the Secret
chain and the readiness chain share their checks, so "why was a token issued" and
"why is it not Ready" always agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from oauth2_token_operator.policies.reasons import ASKED_FOR, Reason
from oauth2_token_operator.util.rfc3339 import rfc3339


@dataclass(frozen=True)
class TokenFacts:
    """What is known of the token currently held for the request."""

    issued_at: float
    usable_until: float
    """When the library stops handing it out (expiry with a clock-skew margin, or the
    trust period of a token whose server gave no expiry)."""
    issued_for: str
    """Fingerprint of the spec it was issued for (`spec_fingerprint`)."""
    active: bool | None = None
    """The last introspection answer; `None` when never introspected."""


@dataclass(frozen=True)
class SecretFacts:
    """What the operator saw of the output Secret (see `secrets.inspect_secret`)."""

    exists: bool
    data_intact: bool = False
    """Its data is exactly what the operator writes for the current token."""
    metadata_intact: bool = False
    """It carries the operator's and the template's labels, annotations and type."""


INTACT_SECRET = SecretFacts(exists=True, data_intact=True, metadata_intact=True)
"""A Secret just written for the current token."""


@dataclass(frozen=True)
class Facts:
    now: float
    spec_fingerprint: str
    token: TokenFacts | None
    secret: SecretFacts
    renew_at: float | None = None
    renewal_requested: bool = False
    """The renew-now annotation asks for a token newer than the current one."""
    revocation_requested: bool = False
    """The client's revoke-all annotation asks to revoke the current token."""


@dataclass(frozen=True)
class Verdict:
    reason: str
    message: str


Check = Callable[[Facts], Verdict | None]


def evaluate(chain: Sequence[Check], facts: Facts) -> Verdict | None:
    """The first verdict of the chain, or `None` when every check passes."""
    for check in chain:
        verdict = check(facts)
        if verdict is not None:
            return verdict
    return None


def no_token(facts: Facts) -> Verdict | None:
    if facts.token is None:
        return Verdict(Reason.MISSING, "no token has been issued for this request yet")
    return None


def spec_changed(facts: Facts) -> Verdict | None:
    if facts.token is not None and facts.token.issued_for != facts.spec_fingerprint:
        return Verdict(
            Reason.SPEC_CHANGED,
            "the token was issued for another client, grant, scopes, resources or audience",
        )
    return None


def revocation_requested(facts: Facts) -> Verdict | None:
    if facts.token is not None and facts.revocation_requested:
        return Verdict(
            Reason.REVOCATION_REQUESTED,
            "revoke-all was requested on the OAuth2Client after this token was issued",
        )
    return None


def token_inactive(facts: Facts) -> Verdict | None:
    if facts.token is not None and facts.token.active is False:
        return Verdict(
            Reason.TOKEN_INACTIVE, "the authorization server says the token is not active"
        )
    return None


def token_expired(facts: Facts) -> Verdict | None:
    if facts.token is not None and facts.now >= facts.token.usable_until:
        return Verdict(Reason.EXPIRED, f"the token expired at {rfc3339(facts.token.usable_until)}")
    return None


def renewal_due(facts: Facts) -> Verdict | None:
    if facts.token is not None and facts.renew_at is not None and facts.now >= facts.renew_at:
        return Verdict(
            Reason.RENEWING, f"the token's renewal time {rfc3339(facts.renew_at)} has come"
        )
    return None


def renewal_requested(facts: Facts) -> Verdict | None:
    if facts.renewal_requested:
        return Verdict(Reason.RENEWAL_REQUESTED, "renewal was requested with the renew annotation")
    return None


def secret_missing(facts: Facts) -> Verdict | None:
    if not facts.secret.exists:
        return Verdict(Reason.SECRET_MISSING, "the Secret does not exist")
    return None


def secret_data_mismatch(facts: Facts) -> Verdict | None:
    if facts.secret.exists and not facts.secret.data_intact:
        return Verdict(Reason.SECRET_DATA_MISMATCH, "the Secret's data is not the current token's")
    return None


def secret_metadata_mismatch(facts: Facts) -> Verdict | None:
    if facts.secret.exists and not facts.secret.metadata_intact:
        return Verdict(
            Reason.SECRET_METADATA_MISMATCH,
            "the Secret's type, labels or annotations differ from the request's template",
        )
    return None


def waits_for_backoff(trigger: Verdict) -> bool:
    """Does this trigger wait while failed attempts back off? Not when a user asked for
    it: the change may be the fix, and acting later would ignore what was asked."""
    return trigger.reason not in ASKED_FOR


def announces_renewal(trigger: Verdict, *, failed_attempts: int) -> bool:
    """Is a renewal worth a Kubernetes Event? Not a routine one (its time came, nothing
    had failed): that is the operator doing its job, visible in the status and the
    metrics, and 1000 tokens of ten minutes would leave some 6000 Event objects an hour
    in etcd. Any other reason (an edit, an annotation, an inactive or expired token,
    recovery after failures) is news to whoever reads the request's Events."""
    return trigger.reason != Reason.RENEWING or failed_attempts > 0


ISSUANCE_CHAIN: tuple[Check, ...] = (
    no_token,
    spec_changed,
    revocation_requested,
    token_inactive,
    token_expired,
    renewal_requested,
    renewal_due,
)
"""A verdict here means: obtain a new token."""

SECRET_CHAIN: tuple[Check, ...] = (
    secret_missing,
    secret_data_mismatch,
    secret_metadata_mismatch,
)
"""With a current token, a verdict here means: write the Secret again (no new token)."""

READINESS_CHAIN: tuple[Check, ...] = (
    no_token,
    spec_changed,
    revocation_requested,
    token_inactive,
    token_expired,
    secret_missing,
    secret_data_mismatch,
)
"""A verdict here means: `Ready=False` with its reason."""
