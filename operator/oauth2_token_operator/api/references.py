"""The pieces both kinds' schemas share: the model base, names, references, conditions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

GROUP = "oauth2.token-operator.io"
"""The API group of both kinds, and the prefix of the labels and annotations they read."""

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DATA_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"

ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
"""An object's name, such as a Secret's (RFC 1123 subdomain)."""
NamespaceName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
"""A namespace's name (RFC 1123 label)."""
DataKey = Annotated[str, Field(min_length=1, max_length=253, pattern=DATA_KEY_PATTERN)]
"""A key of a Secret's or ConfigMap's data."""


class ApiModel(BaseModel):
    """Base of every CRD model: camelCase on the wire, attribute docstrings become the
    schema's descriptions (what `kubectl explain` prints).

    Unknown fields are ignored rather than refused: the API server prunes what the
    schema does not know, and an operator older than its CRD must keep working.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )


class SecretKeySelector(ApiModel):
    """A key of a Secret in the namespace of the object that refers to it."""

    name: ObjectName
    """Name of the Secret."""
    key: DataKey
    """Key in the Secret's data."""


class SecretReference(ApiModel):
    """A Secret in the namespace of the object that refers to it."""

    name: ObjectName
    """Name of the Secret."""


CONDITIONS_LIST: JsonDict = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}
"""Conditions are a map keyed by `type`, as in every Kubernetes API."""


class Condition(ApiModel):
    """The standard Kubernetes condition (`metav1.Condition`)."""

    type: Annotated[str, Field(min_length=1, max_length=316)]
    """`Ready` or `Issuing`."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: Annotated[str, Field(min_length=1, max_length=1024)]
    """One CamelCase word a program can match on; the README lists them all."""
    message: Annotated[str, Field(max_length=32768)] = ""
    """What happened, for people."""
    last_transition_time: datetime
    """When `status` last changed."""
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The `metadata.generation` this condition was computed for."""


class CelRule:
    """One `x-kubernetes-validations` rule: the API server checks it on every write.

    Rules live beside the model they constrain; the CRD generator copies them into the
    schema. Each has a pydantic twin (a validator) for manifests read without an API
    server, and one table of invalid specs is tested against both.
    """

    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        self.message = message

    def as_schema(self) -> JsonDict:
        return {"rule": self.rule, "message": self.message}

    @staticmethod
    def config(*rules: CelRule) -> ConfigDict:
        """A model config carrying `rules` into the model's JSON schema."""
        return ConfigDict(
            json_schema_extra={"x-kubernetes-validations": [r.as_schema() for r in rules]}
        )
