import ssl

import trustme

from oauth2_token_operator.oauth2.transport import OAuth2Transport, TLSConfig, parse_retry_after


async def test_one_pooled_client_per_tls_configuration() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("client.example")
    transport = OAuth2Transport()
    plain = TLSConfig()
    custom_ca = TLSConfig(ca_pem=ca.cert_pem.bytes().decode())
    mtls = TLSConfig(
        ca_pem=custom_ca.ca_pem,
        client_cert_pem=cert.cert_chain_pems[0].bytes().decode(),
        client_key_pem=cert.private_key_pem.bytes().decode(),
    )
    assert transport.client(plain) is transport.client(TLSConfig())
    assert transport.client(custom_ca) is transport.client(
        TLSConfig(ca_pem=ca.cert_pem.bytes().decode())
    )
    assert len({id(transport.client(c)) for c in (plain, custom_ca, mtls)}) == 3
    await transport.aclose()


def test_tls_contexts_verify_by_default() -> None:
    context = TLSConfig().ssl_context()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


def test_client_key_material_stays_out_of_repr() -> None:
    config = TLSConfig(client_cert_pem="CERT", client_key_pem="PRIVATE-KEY-MATERIAL")
    assert "PRIVATE-KEY-MATERIAL" not in repr(config)


def test_retry_after_forms() -> None:
    assert parse_retry_after("120", now=0) == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert parse_retry_after("soon", now=0) is None
    assert parse_retry_after(None, now=0) is None
