"""TLS only: the development certificate, refusal of plain HTTP, of untrusted servers and of old
protocol versions, and OS-assigned ports for background servers."""

from __future__ import annotations

import ssl
import stat
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from pcf_exchange.contracts.errors import InfrastructureError
from pcf_exchange.gateway.api import (
    DevCertificate,
    InMemoryFootprintSource,
    create_app,
    create_self_signed_cert,
    serve,
    start_in_thread,
)


def test_development_certificate_names_localhost_and_keeps_the_key_private(
    tls: DevCertificate,
) -> None:
    cert = x509.load_pem_x509_certificates(tls.cert_file.read_bytes())[0]
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert stat.S_IMODE(tls.key_file.stat().st_mode) == 0o600


def _app() -> object:
    return create_app(InMemoryFootprintSource(), [])


def test_background_servers_get_distinct_os_assigned_ports(
    tls: DevCertificate, trust: ssl.SSLContext
) -> None:
    with (
        start_in_thread(_app(), tls.cert_file, tls.key_file) as one,
        start_in_thread(_app(), tls.cert_file, tls.key_file) as two,
    ):
        assert one.port != two.port and 0 not in (one.port, two.port)
        with httpx.Client(verify=trust) as http:
            assert http.get(f"{one.url}/.well-known/openid-configuration").status_code == 200


def test_plain_http_fails(tls: DevCertificate) -> None:
    with (
        start_in_thread(_app(), tls.cert_file, tls.key_file) as server,
        pytest.raises(httpx.TransportError),
        httpx.Client(timeout=5) as http,
    ):
        http.get(f"http://127.0.0.1:{server.port}/.well-known/openid-configuration")


def test_server_not_trusted_by_default(tls: DevCertificate) -> None:
    with (
        start_in_thread(_app(), tls.cert_file, tls.key_file) as server,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
        httpx.Client() as http,
    ):
        http.get(f"{server.url}/.well-known/openid-configuration")


def test_another_ca_is_not_trusted(tls: DevCertificate, tmp_path: Path) -> None:
    other = create_self_signed_cert(tmp_path)
    with start_in_thread(_app(), tls.cert_file, tls.key_file) as server:
        context = ssl.create_default_context(cafile=str(other.ca_file))
        with pytest.raises(httpx.ConnectError), httpx.Client(verify=context) as http:
            http.get(f"{server.url}/.well-known/openid-configuration")


def test_tls_below_1_2_is_refused(tls: DevCertificate) -> None:
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with (
        start_in_thread(_app(), tls.cert_file, tls.key_file) as server,
        pytest.raises(httpx.ConnectError),
        httpx.Client(verify=context) as http,
    ):
        http.get(f"{server.url}/.well-known/openid-configuration")


def test_missing_certificate_is_an_infrastructure_error(tmp_path: Path) -> None:
    with pytest.raises(InfrastructureError, match="does not exist"):
        start_in_thread(_app(), tmp_path / "nope.pem", tmp_path / "nope-key.pem")
    with pytest.raises(InfrastructureError, match="does not exist"):
        serve(_app(), "127.0.0.1", 0, tmp_path / "nope.pem", tmp_path / "nope-key.pem")


def test_responses_are_not_held_back_by_nagle(tls: DevCertificate, trust: ssl.SSLContext) -> None:
    """Accepted sockets must get TCP_NODELAY: with Nagle and delayed ACKs every keep-alive
    response took ~40 ms instead of ~1 ms."""
    with (
        start_in_thread(_app(), tls.cert_file, tls.key_file) as server,
        httpx.Client(base_url=server.url, verify=trust) as http,
    ):
        http.get("/.well-known/openid-configuration")
        began = time.perf_counter()
        for _ in range(20):
            http.get("/.well-known/openid-configuration")
        per_request = (time.perf_counter() - began) / 20
    assert per_request < 0.02, f"{per_request * 1000:.1f} ms per request"
