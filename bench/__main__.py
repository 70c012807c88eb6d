"""Run every benchmark against one test authorization server: ``make bench``.

``python -m bench [CASE ...]`` runs only the named cases (see ``CASES``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from bench import issuance, short_lived, store_lookup, token_requests
from bench.common import Setup, setup
from tests.authserver.fixtures import run_authserver

CASES: dict[str, Callable[[Setup], Coroutine[Any, Any, None]]] = {
    "requests": token_requests.run,
    "store": lambda _: store_lookup.run(),
    "issuance": issuance.run,
    "short-lived": short_lived.run,
}


def main(argv: list[str]) -> int:
    unknown = [name for name in argv if name not in CASES]
    if unknown:
        print(f"unknown case(s) {unknown}; cases: {' '.join(CASES)}", file=sys.stderr)
        return 2
    with run_authserver() as server:
        for name in argv or list(CASES):
            print(f"== {name}")
            asyncio.run(CASES[name](setup(server)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
