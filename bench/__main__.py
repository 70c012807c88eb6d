"""Run every benchmark against one test authorization server: ``make bench``.

``python -m bench [CASE ...]`` runs only the named cases (see ``CASES``). The operator
cases start a control plane and take minutes (``make bench-operator``); they run only
when named.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from bench import (
    issuance,
    operator_cases,
    operator_isolation,
    short_lived,
    store_lookup,
    token_requests,
)
from bench.common import Setup, setup
from tests.authserver.fixtures import run_authserver

CASES: dict[str, Callable[[Setup], Coroutine[Any, Any, None]]] = {
    "requests": token_requests.run,
    "store": lambda _: store_lookup.run(),
    "issuance": issuance.run,
    "short-lived": short_lived.run,
    "operator": lambda s: operator_cases.run(s, n=100),
    "operator-1000": lambda s: operator_cases.run(s, n=1000),
    "operator-steady-10000": lambda s: operator_cases.run(s, n=10000, steady_only=True),
    "operator-renewal-1000": lambda s: operator_cases.run(s, n=1000, renewal_client="renew"),
    "operator-renewal-1000-10m": lambda s: operator_cases.run(
        s, n=1000, renewal_client="renew-10m"
    ),
    "operator-renewal-10000-10m": lambda s: operator_cases.run(
        s, n=10000, renewal_client="renew-10m"
    ),
    "operator-issuance-100": lambda s: operator_cases.run(s, n=100, issuance_only=5),
    "operator-issuance-1000": lambda s: operator_cases.run(s, n=1000, issuance_only=2),
    "operator-hung": operator_isolation.run,
    "operator-hung-unshared": lambda s: operator_isolation.run(
        s, flags=("--per-server-concurrency=16",)
    ),
}
LIBRARY = ["requests", "store", "issuance", "short-lived"]
"""What runs when no case is named (no control plane needed)."""


def main(argv: list[str]) -> int:
    unknown = [name for name in argv if name not in CASES]
    if unknown:
        print(f"unknown case(s) {unknown}; cases: {' '.join(CASES)}", file=sys.stderr)
        return 2
    with run_authserver() as server:
        for name in argv or LIBRARY:
            print(f"== {name}")
            asyncio.run(CASES[name](setup(server)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
