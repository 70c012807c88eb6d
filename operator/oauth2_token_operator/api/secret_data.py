"""The token Secret's data: its five standard keys, and the extra keys a request's
`secretTemplate.data` renders from the same fields.

A template is Python's `string.Template`: `$name` or `${name}` for one of `FIELDS`, `$$`
for a dollar sign, nothing else. Rendering substitutes once, so a token that contains
template syntax (`${access_token}`, `$$`) lands as data and is never read as template;
there is no expression, attribute, call, file or environment access to abuse. Each
field also has a `_json` form, the value as a JSON string (quoted and escaped), for
templates that build JSON: RFC 6750 bearer tokens are URL-safe characters, but a server
may send others.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from string import Template

from oauth2_token_operator.api.references import DATA_KEY_PATTERN
from oauth2_token_operator.util.rfc3339 import rfc3339

DATA_KEYS = ("access_token", "token_type", "expires_at", "scope", "authorization")
"""The standard keys, always present (a pod can project any of them into a variable)."""
FIELDS = frozenset(DATA_KEYS) | {f"{key}_json" for key in DATA_KEYS}
"""What a template may name."""
MAX_TEMPLATES = 16
MAX_TEMPLATE_LENGTH = 4096


def render_data(
    *, access_token: str, token_type: str, expires_at: float | None, scopes: frozenset[str]
) -> dict[str, str]:
    """The Secret's standard data (unencoded) for one token."""
    return {
        "access_token": access_token,
        "token_type": token_type,
        "expires_at": "" if expires_at is None else rfc3339(expires_at),
        "scope": " ".join(sorted(scopes)),
        "authorization": f"{token_type} {access_token}",
    }


def template_problem(key: str, text: str) -> str | None:
    """Why `text` cannot be the template of data key `key`, or `None` if it can."""
    if not 0 < len(key) <= 253 or not re.fullmatch(DATA_KEY_PATTERN, key):
        return "secretTemplate.data keys are Secret keys: letters, digits, '-', '_' and '.'"
    if key in DATA_KEYS:
        return f"secretTemplate.data cannot set {key}, one of the standard keys"
    template = Template(text)
    if not template.is_valid():
        return f"secretTemplate.data[{key}] is not a valid template (write $$ for a dollar sign)"
    unknown = sorted(set(template.get_identifiers()) - FIELDS)
    if unknown:
        return (
            f"secretTemplate.data[{key}] names {', '.join(unknown)}; a template may name"
            f" only {', '.join(sorted(FIELDS))}"
        )
    return None


def render_templates(templates: Mapping[str, str], data: Mapping[str, str]) -> dict[str, str]:
    """The extra keys, rendered from the standard `data` (templates already checked)."""
    fields = {**data, **{f"{key}_json": json.dumps(value) for key, value in data.items()}}
    return {key: Template(text).substitute(fields) for key, text in templates.items()}
