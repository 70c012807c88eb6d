"""The operator exactly as ``oauth2-token-operator run`` starts it, except that kopf's
per-resource worker limit is lifted: a what-if for the restart benchmark only.

With ``settings.queueing.worker_limit = 64`` (set in the operator's ``configure``), a
(re)start that finds more than 64 objects of one watched kind never runs a handler:
each worker indexes its object and then waits for every object to be indexed, while the
objects beyond the 64th wait for a free worker (kopf issue nolar/kopf#1243). This wrapper
measures what a restart costs once that is fixed; the fix itself belongs to the operator.
"""

from __future__ import annotations

import sys
from typing import Any

from oauth2_token_operator import cli
from oauth2_token_operator.controller import handlers

_configure = handlers.configure


def _configure_unbounded(settings: Any) -> None:
    _configure(settings)
    settings.queueing.worker_limit = None


if __name__ == "__main__":
    handlers.configure = _configure_unbounded
    sys.exit(cli.main(sys.argv[1:]))
