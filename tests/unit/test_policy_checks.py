"""The trigger, Secret and readiness chains: which reason wins, and that the chains
agree on shared checks."""

from __future__ import annotations

import pytest

from oauth2_token_operator.policies.checks import (
    ISSUANCE_CHAIN,
    READINESS_CHAIN,
    SECRET_CHAIN,
    Facts,
    SecretFacts,
    TokenFacts,
    announces_renewal,
    evaluate,
    waits_for_backoff,
)

NOW = 1_800_000_000.0
INTACT = SecretFacts(exists=True, data_intact=True, metadata_intact=True)
GOOD_TOKEN = TokenFacts(issued_at=NOW - 100, usable_until=NOW + 1000, issued_for="spec-1")


def facts(**changes: object) -> Facts:
    base: dict[str, object] = {
        "now": NOW,
        "spec_fingerprint": "spec-1",
        "token": GOOD_TOKEN,
        "secret": INTACT,
        "renew_at": NOW + 500,
    }
    base.update(changes)
    return Facts(**base)  # type: ignore[arg-type]


def reason(chain: tuple[object, ...], f: Facts) -> str | None:
    verdict = evaluate(chain, f)  # type: ignore[arg-type]
    return None if verdict is None else verdict.reason


def test_a_healthy_request_needs_nothing_and_is_ready() -> None:
    f = facts()
    assert reason(ISSUANCE_CHAIN, f) is None
    assert reason(SECRET_CHAIN, f) is None
    assert reason(READINESS_CHAIN, f) is None


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"token": None}, "Missing"),
        ({"spec_fingerprint": "spec-2"}, "SpecChanged"),
        ({"token": TokenFacts(NOW - 100, NOW + 1000, "spec-1", active=False)}, "TokenInactive"),
        ({"token": TokenFacts(NOW - 100, NOW, "spec-1")}, "Expired"),
        ({"renew_at": NOW}, "Renewing"),
        ({"renewal_requested": True}, "RenewalRequested"),
        ({"revocation_requested": True}, "RevocationRequested"),
        (
            {
                "revocation_requested": True,
                "token": TokenFacts(NOW - 100, NOW + 1000, "spec-1", active=False),
            },
            "RevocationRequested",
        ),
    ],
)
def test_issuance_triggers(changes: dict[str, object], expected: str) -> None:
    assert reason(ISSUANCE_CHAIN, facts(**changes)) == expected


def test_the_first_failing_check_names_the_reason() -> None:
    f = facts(spec_fingerprint="spec-2", renew_at=NOW - 1, renewal_requested=True)
    assert reason(ISSUANCE_CHAIN, f) == "SpecChanged"


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        (SecretFacts(exists=False), "SecretMissing"),
        (SecretFacts(exists=True, data_intact=False, metadata_intact=True), "SecretDataMismatch"),
        (
            SecretFacts(exists=True, data_intact=True, metadata_intact=False),
            "SecretMetadataMismatch",
        ),
    ],
)
def test_secret_repairs_need_no_new_token(secret: SecretFacts, expected: str) -> None:
    f = facts(secret=secret)
    assert reason(SECRET_CHAIN, f) == expected
    assert reason(ISSUANCE_CHAIN, f) is None


def test_a_tampered_secret_is_not_ready_until_repaired() -> None:
    f = facts(secret=SecretFacts(exists=True, data_intact=False, metadata_intact=True))
    assert reason(READINESS_CHAIN, f) == "SecretDataMismatch"


def test_renewal_due_keeps_the_request_ready() -> None:
    """A token being renewed is still valid: Ready stays True while Issuing runs."""
    f = facts(renew_at=NOW - 1)
    assert reason(ISSUANCE_CHAIN, f) == "Renewing"
    assert reason(READINESS_CHAIN, f) is None


def test_expired_token_is_not_ready() -> None:
    f = facts(token=TokenFacts(NOW - 100, NOW - 1, "spec-1"))
    assert reason(READINESS_CHAIN, f) == "Expired"
    assert evaluate(READINESS_CHAIN, f) is not None
    assert "expired at" in evaluate(READINESS_CHAIN, f).message  # type: ignore[union-attr]


def test_a_token_revoked_on_request_is_not_ready_until_replaced() -> None:
    f = facts(revocation_requested=True)
    assert reason(READINESS_CHAIN, f) == "RevocationRequested"
    assert reason(SECRET_CHAIN, f) is None, "the Secret is rewritten with the new token"


@pytest.mark.parametrize(
    ("changes", "waits"),
    [
        ({"token": None}, True),
        ({"renew_at": NOW}, True),
        ({"token": TokenFacts(NOW - 100, NOW, "spec-1")}, True),
        ({"token": TokenFacts(NOW - 100, NOW + 1000, "spec-1", active=False)}, True),
        ({"spec_fingerprint": "spec-2"}, False),
        ({"renewal_requested": True}, False),
        ({"revocation_requested": True}, False),
    ],
)
def test_only_what_a_user_asked_for_skips_the_backoff(
    changes: dict[str, object], waits: bool
) -> None:
    trigger = evaluate(ISSUANCE_CHAIN, facts(**changes))
    assert trigger is not None
    assert waits_for_backoff(trigger) is waits


@pytest.mark.parametrize(
    ("changes", "failed_attempts", "announced"),
    [
        ({"renew_at": NOW}, 0, False),  # routine: its time came
        ({"renew_at": NOW}, 2, True),  # recovery after failures
        ({"token": TokenFacts(NOW - 100, NOW, "spec-1")}, 0, True),
        ({"token": TokenFacts(NOW - 100, NOW + 1000, "spec-1", active=False)}, 0, True),
        ({"spec_fingerprint": "spec-2"}, 0, True),
        ({"renewal_requested": True}, 0, True),
        ({"revocation_requested": True}, 0, True),
    ],
)
def test_only_a_renewal_out_of_routine_posts_an_event(
    changes: dict[str, object], failed_attempts: int, announced: bool
) -> None:
    trigger = evaluate(ISSUANCE_CHAIN, facts(**changes))
    assert trigger is not None
    assert announces_renewal(trigger, failed_attempts=failed_attempts) is announced
