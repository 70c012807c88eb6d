"""The client of the token commands (`get`, `introspect`, `revoke`), from flags or from an
`OAuth2Client` manifest.

Secrets (client secret, private key, TLS client key and certificate) are read only from
files or environment variables, never from flag values: a value on the command line is
visible to every user of the machine (`ps`, `/proc/*/cmdline`) and lands in shell
history. A trailing newline (`echo secret > file`) is dropped from every value read.

Errors raised here are `UsageError`s (exit code 2); their text names flags, files, keys
and variables, never a value read from them.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import ValidationError

from oauth2_token_operator.api.crd import API_VERSION, OAUTH2_CLIENT
from oauth2_token_operator.api.oauth2client import OAuth2ClientSpec, SigningAlgorithm
from oauth2_token_operator.client_config import (
    ClientConfigError,
    SecretKey,
    client_config,
    issuer_config,
    referenced_keys,
    without_final_newline,
)
from oauth2_token_operator.oauth2.client_auth import AuthMethod, ClientConfig
from oauth2_token_operator.oauth2.errors import ConfigurationError
from oauth2_token_operator.oauth2.metadata import IssuerConfig


class UsageError(Exception):
    """The command line cannot be carried out as given (exit code 2)."""


@dataclass(frozen=True)
class Client:
    """Everything the token library needs to act as one client."""

    issuer: IssuerConfig
    config: ClientConfig
    default_scopes: list[str] | None = None
    """The manifest's `defaultScopes`; `None` from flags."""


# Secret inputs given as flags: name -> what it is (for help texts).
_SECRET_INPUTS = {
    "client-secret": "the client secret (client_secret_basic, _post, _jwt)",
    "private-key": "the private key, PEM or JWK (private_key_jwt)",
    "tls-cert": "the client certificate chain, PEM (tls_client_auth)",
    "tls-key": "the client certificate's private key, PEM (tls_client_auth)",
}
# Flags that describe the client itself; with --client-manifest the manifest does.
_CLIENT_FLAGS = (
    "issuer",
    "client_id",
    "auth_method",
    "ca_file",
    "allow_insecure_http",
    "signing_alg",
    "key_id",
    *(
        f"{name.replace('-', '_')}_{source}"
        for name in _SECRET_INPUTS
        for source in ("file", "env")
    ),
)


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that name the client, in their own help sections."""
    source = parser.add_argument_group(
        "client", "the client: either --client-manifest or --issuer with --client-id"
    )
    where = source.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--client-manifest",
        type=Path,
        metavar="FILE",
        help="an OAuth2Client manifest (YAML); the Secrets it references come from"
        " --secret-file or --secret-env",
    )
    where.add_argument("--issuer", metavar="URL", help="the issuer identifier")
    source.add_argument(
        "--secret-file",
        action="append",
        default=[],
        metavar="NAME/KEY=PATH",
        help="with --client-manifest: key KEY of the Secret (or ConfigMap) NAME is the"
        " content of PATH (repeat)",
    )
    source.add_argument(
        "--secret-env",
        action="append",
        default=[],
        metavar="NAME/KEY=VAR",
        help="with --client-manifest: key KEY of the Secret (or ConfigMap) NAME is the"
        " value of the environment variable VAR (repeat)",
    )
    flags = parser.add_argument_group("client from flags (with --issuer)")
    flags.add_argument("--client-id", metavar="ID")
    flags.add_argument(
        "--auth-method",
        choices=get_args(AuthMethod),
        default=None,
        metavar="METHOD",
        help=f"how the client authenticates: {', '.join(get_args(AuthMethod))}"
        " (default: client_secret_basic)",
    )
    flags.add_argument("--ca-file", type=Path, metavar="PATH", help="PEM bundle trusted for TLS")
    flags.add_argument(
        "--allow-insecure-http", action="store_true", help="accept plain http (testing only)"
    )
    flags.add_argument(
        "--signing-alg",
        choices=get_args(SigningAlgorithm),
        metavar="ALG",
        help="JWS algorithm of client assertions: HS256/384/512 (client_secret_jwt),"
        " RS*, PS*, ES*, EdDSA (private_key_jwt); default: HS256, or from the key",
    )
    flags.add_argument("--key-id", metavar="KID", help="`kid` header of client assertions")
    for name, what in _SECRET_INPUTS.items():
        one = flags.add_mutually_exclusive_group()
        one.add_argument(f"--{name}-file", type=Path, metavar="PATH", help=f"{what}, from a file")
        one.add_argument(
            f"--{name}-env", metavar="VAR", help=f"{what}, from an environment variable"
        )


def load_client(args: argparse.Namespace, environ: Mapping[str, str]) -> Client:
    """The client the parsed arguments describe."""
    if args.client_manifest is not None:
        given = [f"--{flag.replace('_', '-')}" for flag in _CLIENT_FLAGS if _given(args, flag)]
        if given:
            raise UsageError(f"{', '.join(given)} cannot be combined with --client-manifest")
        return _from_manifest(args, environ)
    if args.secret_file or args.secret_env:
        raise UsageError("--secret-file and --secret-env apply to --client-manifest only")
    return _from_flags(args, environ)


def _given(args: argparse.Namespace, flag: str) -> bool:
    value = getattr(args, flag)
    return value is not None and value is not False


# -- flags ---------------------------------------------------------------------------------


def _from_flags(args: argparse.Namespace, environ: Mapping[str, str]) -> Client:
    if not args.client_id:
        raise UsageError("--issuer needs --client-id")
    fields: dict[str, Any] = {
        "client_id": args.client_id,
        "auth_method": args.auth_method or "client_secret_basic",
    }
    for name, field in (
        ("client-secret", "client_secret"),
        ("private-key", "private_key"),
        ("tls-cert", "tls_client_cert"),
        ("tls-key", "tls_client_key"),
    ):
        value = _secret_input(args, name, environ)
        if value is not None:
            fields[field] = value
    if args.signing_alg is not None:
        fields["signing_alg"] = args.signing_alg
    if args.key_id is not None:
        fields["key_id"] = args.key_id
    _check_credentials_fit(fields)
    try:
        config = ClientConfig.model_validate(fields)
    except ConfigurationError as exc:  # names fields, never values
        raise UsageError(str(exc)) from None
    issuer = IssuerConfig(
        issuer=args.issuer,
        allow_insecure_http=args.allow_insecure_http,
        ca_pem=_read_file(args.ca_file, "--ca-file") if args.ca_file else None,
    )
    return Client(issuer, config)


_CREDENTIAL_FLAGS = {
    "client_secret": ("--client-secret-*", ("client_secret_basic", "client_secret_post",
                                            "client_secret_jwt")),
    "private_key": ("--private-key-*", ("private_key_jwt",)),
    "tls_client_cert": ("--tls-cert-*", ("tls_client_auth",)),
    "tls_client_key": ("--tls-key-*", ("tls_client_auth",)),
}  # fmt: skip


def _check_credentials_fit(fields: Mapping[str, Any]) -> None:
    """A credential the method does not use is a mistake worth saying (the library would
    ignore it, and the user would wonder why authentication fails)."""
    method = fields["auth_method"]
    for field, (flags, methods) in _CREDENTIAL_FLAGS.items():
        if field in fields and method not in methods:
            raise UsageError(f"{flags} does not apply to --auth-method {method}")


def _secret_input(args: argparse.Namespace, name: str, environ: Mapping[str, str]) -> str | None:
    attribute = name.replace("-", "_")
    path: Path | None = getattr(args, f"{attribute}_file")
    variable: str | None = getattr(args, f"{attribute}_env")
    if path is not None:
        return _read_file(path, f"--{name}-file")
    if variable is not None:
        return _read_env(environ, variable, f"--{name}-env")
    return None


# -- manifest ------------------------------------------------------------------------------


def _from_manifest(args: argparse.Namespace, environ: Mapping[str, str]) -> Client:
    path: Path = args.client_manifest
    spec = load_manifest(path)
    if spec.authentication.service_account_ref is not None:
        raise UsageError(
            f"{path}: service_account_token: only the operator, in the cluster, mints the"
            " ServiceAccount tokens such a client authenticates with"
        )
    sources = _value_sources(args.secret_file, "--secret-file", "PATH")
    env_sources = _value_sources(args.secret_env, "--secret-env", "VAR")
    for both in sources.keys() & env_sources.keys():
        raise UsageError(f"{both} is given by both --secret-file and --secret-env")
    values: dict[SecretKey, str] = {}
    wanted = referenced_keys(spec)
    for key in wanted:
        ref = f"{key.name}/{key.key}"
        if ref in sources:
            values[key] = _read_file(Path(sources[ref]), f"--secret-file {ref}")
        elif ref in env_sources:
            values[key] = _read_env(environ, env_sources[ref], f"--secret-env {ref}")
        else:
            raise UsageError(
                f"{path}: the client needs {key}: give --secret-file {ref}=PATH"
                f" or --secret-env {ref}=VAR"
            )
    known = {f"{key.name}/{key.key}" for key in wanted}
    for unused in sorted((sources.keys() | env_sources.keys()) - known):
        raise UsageError(f"{path} references no Secret or ConfigMap key {unused}")
    try:
        return Client(
            issuer_config(spec, values),
            client_config(spec, values),
            default_scopes=spec.default_scopes,
        )
    except ClientConfigError as exc:  # names objects and keys, never values
        raise UsageError(f"{path}: {exc.message}") from None


def load_manifest(path: Path) -> OAuth2ClientSpec:
    """The spec of the one `OAuth2Client` in a YAML file (other documents are skipped, so
    a file that also holds the client's AccessTokenRequests works)."""
    text = _read_file(path, "--client-manifest", strip=False)
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise UsageError(f"{path} is not valid YAML{where}") from None
    clients = [d for d in documents if isinstance(d, dict) and d.get("kind") == OAUTH2_CLIENT.kind]
    if len(clients) != 1:
        raise UsageError(f"{path} holds {len(clients)} {OAUTH2_CLIENT.kind} objects, not one")
    manifest = clients[0]
    if manifest.get("apiVersion") != API_VERSION:
        raise UsageError(f"{path}: apiVersion must be {API_VERSION}")
    try:
        return OAuth2ClientSpec.model_validate(manifest.get("spec"))
    except ValidationError as exc:  # the models hide input values in their errors
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors()
        )
        raise UsageError(f"{path}: invalid spec: {problems}") from None


def _value_sources(items: list[str], flag: str, what: str) -> dict[str, str]:
    """`NAME/KEY=WHERE` arguments as {"NAME/KEY": WHERE}."""
    sources: dict[str, str] = {}
    for item in items:
        ref, sep, where = item.partition("=")
        name, slash, key = ref.partition("/")
        if not (sep and slash and name and key and where):
            raise UsageError(f"{flag} takes NAME/KEY={what}")
        if ref in sources:
            raise UsageError(f"{flag} {ref} is given twice")
        sources[ref] = where
    return sources


# -- reading values ------------------------------------------------------------------------


def _read_file(path: Path, flag: str, *, strip: bool = True) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{flag}: {path} is not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"{flag}: cannot read {path}: {exc.strerror}") from None
    return without_final_newline(text) if strip else text


def _read_env(environ: Mapping[str, str], variable: str, flag: str) -> str:
    value = environ.get(variable)
    if not value:
        raise UsageError(f"{flag}: the environment variable {variable} is not set or empty")
    return without_final_newline(value)
