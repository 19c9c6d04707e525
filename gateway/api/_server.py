"""Serving the API with uvicorn over TLS only (TLS 1.2+): a blocking :func:`serve`, a background
:func:`start_in_thread` on an OS-assigned port for tests and demos, and a development CA plus
server certificate made with ``cryptography``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from uvicorn.config import LOGGING_CONFIG

from pcf_exchange.contracts.errors import InfrastructureError

__all__ = [
    "BackgroundServer",
    "DevCertificate",
    "create_self_signed_cert",
    "serve",
    "start_in_thread",
]


@dataclass(frozen=True, slots=True)
class DevCertificate:
    """Files of a development TLS setup: the server's certificate and key, and the self-signed
    CA that issued it (clients trust ``ca_file``)."""

    cert_file: Path
    key_file: Path
    ca_file: Path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(0o600)


def create_self_signed_cert(
    directory: Path,
    *,
    hostnames: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
    days: int = 30,
) -> DevCertificate:
    """Create a self-signed CA and a server certificate for *hostnames* (DNS names or IP
    addresses) in *directory*: ``ca.pem``, ``server.pem`` (chain), ``server-key.pem`` (0600).

    For development and demos only; the CA key is not kept, so nothing else can be signed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pcf-exchange development CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = DevCertificate(
        cert_file=directory / "server.pem",
        key_file=directory / "server-key.pem",
        ca_file=directory / "ca.pem",
    )
    pem = serialization.Encoding.PEM
    files.ca_file.write_bytes(ca_cert.public_bytes(pem))
    files.cert_file.write_bytes(cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    _write_private(
        files.key_file,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    return files


def _tls_context_factory(
    config: uvicorn.Config, default: Callable[[], ssl.SSLContext]
) -> ssl.SSLContext:
    context = default()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _config(
    app: Any,
    host: str,
    port: int,
    tls: tuple[Path | str, Path | str],
    log_level: str | int,
    *,
    root_logging: bool = False,
) -> uvicorn.Config:
    certfile, keyfile = tls
    for path in (certfile, keyfile):
        if not Path(path).is_file():
            raise InfrastructureError(f"TLS file '{path}' does not exist")
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=str(certfile),
        ssl_keyfile=str(keyfile),
        ssl_context_factory=_tls_context_factory,
        log_level=log_level,
        log_config=None if root_logging else LOGGING_CONFIG,
        server_header=False,
        proxy_headers=False,
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when the
    # protocol says TCP; without it, Nagle + delayed ACK add ~40 ms to every response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InfrastructureError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}:{port}"


def serve(
    app: Any,
    host: str,
    port: int,
    certfile: Path | str,
    keyfile: Path | str,
    *,
    log_level: str | int = "info",
    on_ready: Callable[[str], None] | None = None,
    root_logging: bool = False,
) -> None:
    """Serve *app* over HTTPS until interrupted (there is no plain-HTTP mode).

    *port* 0 lets the OS choose; *on_ready* receives the base URL once the socket is bound.
    With *root_logging*, uvicorn leaves logging as the caller configured it (its records go to
    the root logger: :func:`contracts.observability.configure_logging`) instead of its own.
    """
    config = _config(app, host, port, (certfile, keyfile), log_level, root_logging=root_logging)
    sock = _bind(host, port)
    try:
        if on_ready is not None:
            on_ready(_url(host, sock.getsockname()[1]))
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


class BackgroundServer:
    """A uvicorn server running in a daemon thread; use as a context manager or call stop()."""

    def __init__(
        self, server: uvicorn.Server, thread: threading.Thread, sock: socket.socket, host: str
    ) -> None:
        self._server = server
        self._thread = thread
        self._socket = sock
        self.host = host
        self.port: int = sock.getsockname()[1]
        self.url = _url(host, self.port)
        """Base URL, e.g. ``https://127.0.0.1:54321``."""

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_in_thread(
    app: Any,
    certfile: Path | str,
    keyfile: Path | str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
    timeout: float = 15.0,
) -> BackgroundServer:
    """Start *app* over HTTPS in a background thread and wait until it accepts connections.

    The default port 0 lets the OS assign a free one (see ``.port``/``.url``).
    """
    config = _config(app, host, port, (certfile, keyfile), log_level)
    sock = _bind(host, port)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run,
        kwargs={"sockets": [sock]},
        name=f"pact-api-{sock.getsockname()[1]}",
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout)
            sock.close()
            raise InfrastructureError(f"the API server did not start within {timeout} s")
        time.sleep(0.01)
    return BackgroundServer(server, thread, sock, host)
