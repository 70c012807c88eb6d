"""The custom resources' API: pydantic models of `OAuth2Client` and `AccessTokenRequest`
(`v1alpha1`), from which the CRDs in `crds/` are generated."""

from oauth2_token_operator.api.accesstokenrequest import (
    AccessTokenRequestSpec,
    AccessTokenRequestStatus,
    ClientReference,
)
from oauth2_token_operator.api.crd import ACCESS_TOKEN_REQUEST, API_VERSION, GROUP, OAUTH2_CLIENT
from oauth2_token_operator.api.durations import Duration, format_duration, parse_duration
from oauth2_token_operator.api.oauth2client import OAuth2ClientSpec, OAuth2ClientStatus
from oauth2_token_operator.api.references import Condition, SecretKeySelector

__all__ = [
    "ACCESS_TOKEN_REQUEST",
    "API_VERSION",
    "GROUP",
    "OAUTH2_CLIENT",
    "AccessTokenRequestSpec",
    "AccessTokenRequestStatus",
    "ClientReference",
    "Condition",
    "Duration",
    "OAuth2ClientSpec",
    "OAuth2ClientStatus",
    "SecretKeySelector",
    "format_duration",
    "parse_duration",
]
