"""TLS contexts for OAuth2 calls, built from configuration alone.

Nothing here reads the process environment: ``SSL_CERT_FILE`` and
``SSL_CERT_DIR`` (which OpenSSL's default paths honour) are ignored, so a
variable set for some other program cannot change whom the operator trusts.
The ``tls_client_auth`` key is handed to OpenSSL through an anonymous
in-memory file (``memfd_create``), never written to disk: that works under a
read-only root filesystem and leaves no key material behind.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field

from oauth2_token_operator.oauth2.errors import ConfigurationError


@dataclass(frozen=True)
class TLSConfig:
    """How to verify the server and, for ``tls_client_auth``, who we are.

    Certificates are held as PEM text, not paths, so a rotated Secret yields a
    new configuration (and a new connection pool) instead of a stale one.
    """

    ca_pem: str | None = None
    """CA bundle that verifies the server, instead of the system's trust store."""
    client_cert_pem: str | None = field(default=None, repr=False)
    client_key_pem: str | None = field(default=None, repr=False)

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client context; ``ConfigurationError`` for unusable PEM input."""
        context = _context_trusting_pem(self.ca_pem) if self.ca_pem else system_trust_context()
        if self.client_cert_pem:
            load_client_certificate(context, self.client_cert_pem, self.client_key_pem)
        return context


def system_trust_context() -> ssl.SSLContext:
    """A verifying context with the system's CA store at OpenSSL's compiled-in paths.

    ``ssl.create_default_context()`` would also honour ``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR``; this does not.
    """
    paths = ssl.get_default_verify_paths()
    cafile = paths.openssl_cafile if os.path.isfile(paths.openssl_cafile) else None
    capath = paths.openssl_capath if os.path.isdir(paths.openssl_capath) else None
    if cafile is None and capath is None:
        # No system store: a context that trusts nothing still verifies.
        return _empty_verifying_context()
    return ssl.create_default_context(cafile=cafile, capath=capath)


def _empty_verifying_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _context_trusting_pem(ca_pem: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cadata=ca_pem)
    except (ssl.SSLError, ValueError) as exc:
        reason = _ssl_reason(exc)
    raise ConfigurationError(f"the CA bundle cannot be loaded ({reason})")


def load_client_certificate(context: ssl.SSLContext, cert_pem: str, key_pem: str | None) -> None:
    """Load a client certificate chain and key without touching the filesystem.

    ``ssl`` reads a chain only from a path, so the PEM goes into an anonymous
    memory-backed file that OpenSSL opens as ``/proc/self/fd/N``; it vanishes
    when the descriptor is closed.
    """
    if not hasattr(os, "memfd_create"):
        raise ConfigurationError("tls_client_auth needs Linux (memfd_create)")
    material = cert_pem.strip() + "\n" + (key_pem.strip() + "\n" if key_pem else "")
    fd = os.memfd_create("oauth2-client-certificate", os.MFD_CLOEXEC)
    reason: str | None = None
    try:
        _write_all(fd, material.encode("utf-8"))
        try:
            context.load_cert_chain(f"/proc/self/fd/{fd}")
        except (ssl.SSLError, ValueError) as exc:
            reason = _ssl_reason(exc)
    finally:
        os.close(fd)
    if reason is not None:
        # Raised outside the handler: no exception chain to carry key material.
        raise ConfigurationError(f"the client certificate or key cannot be loaded ({reason})")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _ssl_reason(exc: Exception) -> str:
    """OpenSSL's reason code (``PEM_LIB``, ``KEY_VALUES_MISMATCH``…), never the input."""
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else type(exc).__name__
