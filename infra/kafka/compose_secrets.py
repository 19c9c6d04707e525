"""The docker-compose broker's secrets: ``python -m pcf_exchange.infra.kafka.compose_secrets DIR``.

Run once by the ``kafka-secrets`` service of ``docker-compose.yml`` into a volume the broker
and the services mount. It writes, keeping whatever exists already (a restart rotates nothing):

- ``tls/ca.pem``, ``tls/broker.pem`` — a private CA and the broker's certificate for ``kafka``,
  ``localhost`` and ``127.0.0.1`` (:mod:`infra.kafka.tls`);
- ``server.properties`` — from ``server-compose.properties.template``: SASL_SSL/SCRAM-SHA-512
  listeners, the KRaft ``StandardAuthorizer``, deny unless an ACL allows;
- ``cluster.id``, ``admin.password`` — what the broker's ``kafka-storage format --add-scram``
  needs to bootstrap the operator's credential;
- ``admin.properties`` — the operator's client config (``KAFKA_CLIENT_CONFIG``).

Secret files are mode 0600, owned by ``--owner`` (the apache/kafka image runs as uid 1000).
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import string
import uuid
from importlib import resources
from pathlib import Path

from pcf_exchange.contracts.kafka_client import KafkaClientSettings, write_client_properties
from pcf_exchange.infra.kafka.launcher import ADMIN_USER, SCRAM_MECHANISM
from pcf_exchange.infra.kafka.tls import make_broker_tls

__all__ = ["write_compose_secrets"]


def _secret_file(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def write_compose_secrets(
    directory: Path, *, bootstrap: str = "kafka:29092", owner: tuple[int, int] | None = None
) -> list[Path]:
    """Write the files above into *directory* (existing ones are kept); return them."""
    directory.mkdir(parents=True, exist_ok=True)
    tls = make_broker_tls(directory / "tls", hosts=("kafka", "localhost"))
    password_file = directory / "admin.password"
    if not password_file.exists():
        _secret_file(password_file, secrets.token_hex(24))
    password = password_file.read_text().strip()
    cluster_file = directory / "cluster.id"
    if not cluster_file.exists():
        cluster_file.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
    server = directory / "server.properties"
    if not server.exists():
        template = resources.files("pcf_exchange.infra.kafka").joinpath(
            "server-compose.properties.template"
        )
        _secret_file(
            server,
            string.Template(template.read_text()).substitute(
                keystore=tls.keystore_file,
                internal_password=secrets.token_hex(24),
                admin_user=ADMIN_USER,
            ),
        )
    admin = directory / "admin.properties"
    if not admin.exists():
        write_client_properties(
            admin,
            KafkaClientSettings(
                security_protocol="SASL_SSL",
                sasl_mechanism=SCRAM_MECHANISM,
                username=ADMIN_USER,
                password=password,
                ssl_ca_location=str(tls.ca_file),
            ),
            bootstrap=bootstrap,
        )
    written = [tls.ca_file, tls.keystore_file, tls.ca_key_file, password_file, cluster_file]
    written += [server, admin]
    if owner is not None:
        for path in [directory, tls.ca_file.parent, *written]:
            os.chown(path, *owner)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--bootstrap", default="kafka:29092")
    parser.add_argument("--owner", default=None, help="uid:gid to own the files (e.g. 1000:1000)")
    args = parser.parse_args()
    owner = tuple(int(x) for x in args.owner.split(":")) if args.owner else None
    for path in write_compose_secrets(
        args.directory,
        bootstrap=args.bootstrap,
        owner=(owner[0], owner[1]) if owner else None,
    ):
        print(f"{oct(path.stat().st_mode & 0o777)} {path}")


if __name__ == "__main__":
    main()
