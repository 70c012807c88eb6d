"""The revoking finalizer, put on a new request by its own reconcile.

kopf adds the finalizer of an `on.delete` handler itself, but only after the `on.event`
handler of the same watch event has run, and a request is served only once the
finalizer is on it (a token issued for a request deleted meanwhile would never be
revoked). Left to kopf, every issuance waited for the watch to bring kopf's patch back
(kopf 1.45, `processing.process_resource_causes`: the watching cause first, then the
finalizer patch). The reconcile adds it instead, in one PATCH (`KubeApi.add_finalizer`,
which cannot drop another controller's finalizer), and goes on with the body the PATCH
returns. kopf then finds the finalizer on the event it handles next and writes nothing:
three writes per issuance still (finalizer, Secret, status).

When our PATCH fails, nothing is issued on that event: the object changed (a newer
event follows) or the API server failed (kopf, which then still sees no finalizer,
adds it with its own retries, and its watch event brings the request back).
"""

from __future__ import annotations

import logging
from typing import Any, cast

from oauth2_token_operator.api import ACCESS_TOKEN_REQUEST
from oauth2_token_operator.controller.shared.context import Body
from oauth2_token_operator.controller.shared.ledger import RequestKey
from oauth2_token_operator.controller.shared.log_refs import about_request
from oauth2_token_operator.kube.api import Conflict, KubeApi, KubeApiError, NotFound

log = logging.getLogger(__name__)


class Finalizer:
    def __init__(self, kube: KubeApi, name: str) -> None:
        self.kube = kube
        self.name = name

    def on(self, body: Body) -> bool:
        return self.name in (body.get("metadata", {}).get("finalizers") or ())

    async def add(self, key: RequestKey, body: Body, *, watched: bool) -> Body | None:
        """The request with the finalizer on it, as the PATCH returned it; None if it
        could not be put on (see the module's docstring).

        `watched`: `body` is the watch event's own copy, which kopf's `on.event` handler
        passed on; its finalizers are then updated in place, so that kopf, handling the
        same event after the handler, sees the finalizer there and adds none. (Its
        resourceVersion stays the event's: kopf's watch bookkeeping reads it.) Any other
        body (an index's) is left as it is."""
        try:
            patched = await self.kube.add_finalizer(ACCESS_TOKEN_REQUEST.plural, body, self.name)
        except (Conflict, NotFound) as exc:
            log.debug("%s; waiting for its next event", exc, extra=about_request(key))
            return None
        except KubeApiError as exc:
            log.warning("%s; kopf adds it instead", exc, extra=about_request(key))
            return None
        if watched:
            metadata = cast(dict[str, Any], body["metadata"])
            metadata["finalizers"] = list(patched["metadata"].get("finalizers") or ())
        return patched
