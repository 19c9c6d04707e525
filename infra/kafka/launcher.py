"""A real Apache Kafka broker (KRaft, single node) started from Maven Central jars.

No Docker needed: the first start resolves ``kafka_2.13`` and ``kafka-tools`` with Maven into a
cache outside the repository (``~/.cache/pcf-exchange/kafka-<version>/lib``) and reuses it after.
Each broker lives in a *state directory* holding its config, data, log and a ``broker.json``
record (pid, ports, bootstrap address) that ``stop``/``status`` and the tests read.

The steps of :func:`start`, in order:

1. check Java ≥ 17 (and Maven, only when the jars are not cached yet);
2. resolve the jars into the cache (once per version);
3. pick ports (the OS chooses free ones unless configured) and refuse a taken one;
4. write ``server.properties``, format the storage with a fresh cluster id;
5. start ``java kafka.Kafka`` in its own session, logging to ``broker.log``;
6. wait until the broker answers a metadata request (or died: show its log's last lines);
7. write ``broker.json``.

With ``secure=True`` (``pcfx broker start --secure``) step 4 also makes a private CA and the
broker's TLS certificate (:mod:`infra.kafka.tls`), writes ``server-secure.properties.template``
(clients on a SASL_SSL listener, SCRAM-SHA-512; broker and controller traffic on loopback-only
SASL_PLAINTEXT/PLAIN listeners; the KRaft ``StandardAuthorizer`` denying whatever no ACL allows)
and bootstraps the operator's SCRAM credential while formatting (``--add-scram``). The admin's
client properties file (``admin.properties``, mode 0600) and the CA file are in the state dir,
named in ``broker.json``.

:func:`stop` never signals a process it did not start: the pid must still run ``kafka.Kafka``
with this state directory's config on its command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from contracts.errors import BrokerError, InfrastructureError
from contracts.kafka_client import KafkaClientSettings, write_client_properties

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "BrokerInfo",
    "BrokerStatus",
    "ensure_jars",
    "java_tool",
    "read_log_tail",
    "start",
    "status",
    "stop",
]

DEFAULT_KAFKA_VERSION = "4.1.1"
ADMIN_USER = "admin"
"""The operator's principal on a secure broker (``User:admin``, a super user)."""
SCRAM_MECHANISM = "SCRAM-SHA-512"
MIN_JAVA = 17
READY_TIMEOUT_S = 60.0
BROKER_MAIN = "kafka.Kafka"
JVM_OPTS = (
    "-Xms256m",
    "-Xmx768m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-Djava.awt.headless=true",
)


def cache_root() -> Path:
    """Where jars and broker state live: ``$PCFX_CACHE``, else ``~/.cache/pcf-exchange``."""
    base = os.environ.get("PCFX_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pcf-exchange"
    )
    return Path(base)


def kafka_version() -> str:
    return os.environ.get("PCFX_KAFKA_VERSION", DEFAULT_KAFKA_VERSION)


def default_state_dir() -> Path:
    return Path(os.environ.get("PCFX_BROKER_DIR") or cache_root() / "broker")


@dataclass(frozen=True)
class BrokerInfo:
    """What ``broker.json`` records about a broker this launcher started."""

    pid: int
    port: int
    controller_port: int
    bootstrap: str
    kafka_version: str
    state_dir: str
    started_at: float
    ready_after_s: float
    security_protocol: str = "PLAINTEXT"
    """``PLAINTEXT``, or ``SASL_SSL`` for a broker started with ``--secure``."""
    sasl_mechanism: str | None = None
    ca_file: str | None = None
    """The CA certificate clients trust (``KAFKA_SSL_CA_LOCATION``), secure brokers only."""
    admin_principal: str | None = None
    admin_config: str | None = None
    """Client properties file of the admin principal (mode 0600), secure brokers only."""
    internal_port: int | None = None
    """The loopback-only inter-broker listener of a secure broker (not for clients)."""

    def client_settings(self) -> KafkaClientSettings:
        """How the operator connects to this broker (the admin principal on a secure one)."""
        if self.admin_config:
            return KafkaClientSettings.from_properties(self.admin_config)
        return KafkaClientSettings(bootstrap_servers=self.bootstrap, source="plain broker")

    @classmethod
    def load(cls, state_dir: Path) -> BrokerInfo | None:
        path = state_dir / "broker.json"
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise InfrastructureError(
                f"'{path}' is not a broker record this launcher wrote ({exc})",
                hint=f"Remove '{path}' if no broker is running from {state_dir}.",
            ) from exc


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    info: BrokerInfo | None
    detail: str


# --- 1. Java and Maven -------------------------------------------------------------------------


def _java_major() -> int:
    java = shutil.which("java")
    if java is None:
        raise InfrastructureError(
            "Java was not found on PATH; the local Kafka broker needs Java >= 17",
            hint="Install a JDK 17+ (Debian: apt-get install openjdk-17-jdk-headless), "
            "or use Docker (docker compose up) or set KAFKA_BOOTSTRAP_SERVERS.",
        )
    out = subprocess.run(
        [java, "-version"], capture_output=True, text=True, timeout=30, check=False
    ).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        raise InfrastructureError(f"could not read the Java version from: {out.strip()!r}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check_java() -> int:
    major = _java_major()
    if major < MIN_JAVA:
        raise InfrastructureError(
            f"Kafka {kafka_version()} needs Java >= {MIN_JAVA} (found Java {major})",
            hint="Install a JDK 17+ and put it first on PATH (or set JAVA_HOME/bin on PATH).",
        )
    return major


# --- 2. Jars -----------------------------------------------------------------------------------


def jar_dir(version: str | None = None) -> Path:
    return cache_root() / f"kafka-{version or kafka_version()}" / "lib"


def ensure_jars(version: str | None = None) -> Path:
    """Resolve the broker and tool jars with Maven, once per version; return the lib folder."""
    version = version or kafka_version()
    lib = jar_dir(version)
    if lib.is_dir() and any(lib.glob("kafka_2.13-*.jar")):
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InfrastructureError(
            f"Maven was not found on PATH and the Kafka {version} jars are not cached in {lib}",
            hint="Install Maven (Debian: apt-get install maven); it fetches the jars from "
            "Maven Central once.",
        )
    partial = lib.with_name("lib.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    with resources.as_file(resources.files("infra.kafka") / "pom.xml") as pom:
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={partial}",
            "-DincludeScope=runtime",
            f"-Dkafka.version={version}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0 or not any(partial.glob("kafka_2.13-*.jar")):
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise InfrastructureError(
            f"Maven could not resolve Kafka {version} from Maven Central:\n{tail}",
            hint="Check that Maven Central is reachable (proxy settings in ~/.m2/settings.xml).",
        )
    shutil.rmtree(lib, ignore_errors=True)
    partial.rename(lib)
    return lib


def classpath(version: str | None = None) -> str:
    return str(ensure_jars(version)) + os.sep + "*"


def java_tool(
    main_class: str,
    args: Sequence[str],
    *,
    timeout: float = 600,
    heap: str = "512m",
) -> subprocess.CompletedProcess[str]:
    """Run one of Kafka's own tools (e.g. ``org.apache.kafka.tools.ProducerPerformance``)."""
    check_java()
    cmd = ["java", f"-Xmx{heap}", "-cp", classpath(), main_class, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


# --- 3. Ports ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _check_port_free(port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise BrokerError(
                f"{what} port {port} on 127.0.0.1 is already in use ({exc.strerror})",
                hint="Choose another with --port, or leave it out to let the OS pick a free one.",
            ) from None


# --- 4.-7. Start -------------------------------------------------------------------------------


def read_log_tail(state_dir: Path, lines: int = 30) -> str:
    log = state_dir / "broker.log"
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no broker.log yet)"


def _is_our_broker(pid: int, state_dir: Path) -> bool:
    """True only if *pid* runs kafka.Kafka with this state dir's server.properties."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    config = str(state_dir / "server.properties").encode()
    return BROKER_MAIN.encode() in argv and config in argv


def _wait_ready(
    bootstrap: str,
    proc: subprocess.Popen[bytes],
    state_dir: Path,
    settings: KafkaClientSettings | None = None,
) -> None:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + READY_TIMEOUT_S
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerError(
                f"the broker exited with code {proc.returncode} before it was ready; "
                f"last lines of {state_dir / 'broker.log'}:\n{read_log_tail(state_dir)}",
                hint="Fix what the log says (often a taken port or a full disk) and start again.",
            )
        try:
            admin = KafkaAdminClient(
                **(settings or KafkaClientSettings()).kafka_python(),
                bootstrap_servers=bootstrap,
                request_timeout_ms=3000,
                client_id="pcfx-launcher",
            )
            try:
                admin.describe_cluster()
                return
            finally:
                admin.close()
        except (KafkaError, OSError, ValueError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.3)
    proc.kill()
    raise BrokerError(
        f"the broker did not answer a metadata request within {READY_TIMEOUT_S:.0f} s "
        f"({last_error}); last lines of its log:\n{read_log_tail(state_dir)}"
    )


def start(
    state_dir: Path | None = None,
    *,
    port: int | None = None,
    controller_port: int | None = None,
    version: str | None = None,
    secure: bool = False,
) -> BrokerInfo:
    """Start a broker from *state_dir*, or return the one already running there.

    A broker already running there is returned as it is; asking for ``secure`` when it is not
    (or the reverse) is a :class:`BrokerError` (stop it first)."""
    state_dir = (state_dir or default_state_dir()).resolve()
    current = status(state_dir)
    if current.running and current.info is not None:
        running_secure = current.info.security_protocol != "PLAINTEXT"
        if running_secure != secure:
            raise BrokerError(
                f"the broker running from {state_dir} is {current.info.security_protocol}"
                f" (asked for {'a secure' if secure else 'a plaintext'} one)",
                hint=f"Stop it first: pcfx broker stop --state-dir {state_dir}",
            )
        return current.info
    version = version or kafka_version()
    began = time.monotonic()
    # (1) Java, (2) jars
    check_java()
    lib = ensure_jars(version)
    # (3) ports
    port = port or free_port()
    controller_port = controller_port or free_port()
    if controller_port == port:
        raise BrokerError(f"broker and controller ports must differ (both {port})")
    _check_port_free(port, "broker")
    _check_port_free(controller_port, "controller")
    internal_port = None
    if secure:
        internal_port = free_port()
        while internal_port in {port, controller_port}:
            internal_port = free_port()
    # (4) config and storage: a fresh data dir each start (the broker is for tests and demos)
    state_dir.mkdir(parents=True, exist_ok=True)
    data_dir = state_dir / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    name = "server-secure.properties.template" if secure else "server.properties.template"
    template = resources.files("infra.kafka").joinpath(name).read_text()
    config = state_dir / "server.properties"
    values: dict[str, object] = {
        "port": port,
        "controller_port": controller_port,
        "data_dir": data_dir,
    }
    admin_password = ""
    settings: KafkaClientSettings | None = None
    if secure:
        from infra.kafka.tls import make_broker_tls

        tls = make_broker_tls(state_dir / "tls")
        admin_password = secrets.token_hex(24)
        values |= {
            "internal_port": internal_port,
            "keystore": tls.keystore_file,
            "internal_password": secrets.token_hex(24),
            "admin_user": ADMIN_USER,
        }
        settings = KafkaClientSettings(
            security_protocol="SASL_SSL",
            sasl_mechanism=SCRAM_MECHANISM,
            username=ADMIN_USER,
            password=admin_password,
            ssl_ca_location=str(tls.ca_file),
            bootstrap_servers=f"127.0.0.1:{port}",
            source="the secure broker's admin.properties",
        )
    config.unlink(missing_ok=True)
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(string.Template(template).substitute(values))
    log4j = state_dir / "log4j2.properties"
    log4j.write_text(resources.files("infra.kafka").joinpath("log4j2.properties").read_text())
    cp = f"{lib}{os.sep}*"
    java = ["java", *JVM_OPTS, f"-Dlog4j2.configurationFile={log4j}", "-cp", cp]
    cluster_id = subprocess.run(
        [*java, "kafka.tools.StorageTool", "random-uuid"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.strip()
    scram = (
        ["--add-scram", f"{SCRAM_MECHANISM}=[name={ADMIN_USER},password={admin_password}]"]
        if secure
        else []
    )
    fmt = subprocess.run(
        [*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config), *scram],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if fmt.returncode != 0:
        raise BrokerError(f"formatting the broker storage failed:\n{fmt.stdout}{fmt.stderr}")
    # (5) the broker, detached in its own session so a Ctrl-C in the caller does not kill it
    log_file = (state_dir / "broker.log").open("wb")
    proc = subprocess.Popen(
        [*java, BROKER_MAIN, str(config)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log_file.close()
    bootstrap = f"127.0.0.1:{port}"
    # (6) ready?
    admin_config = None
    if settings is not None:
        admin_config = write_client_properties(state_dir / "admin.properties", settings)
    _wait_ready(bootstrap, proc, state_dir, settings)
    # (7) record
    info = BrokerInfo(
        pid=proc.pid,
        port=port,
        controller_port=controller_port,
        bootstrap=bootstrap,
        kafka_version=version,
        state_dir=str(state_dir),
        started_at=time.time(),
        ready_after_s=round(time.monotonic() - began, 2),
        security_protocol="SASL_SSL" if secure else "PLAINTEXT",
        sasl_mechanism=SCRAM_MECHANISM if secure else None,
        ca_file=str(settings.ssl_ca_location) if settings else None,
        admin_principal=f"User:{ADMIN_USER}" if secure else None,
        admin_config=str(admin_config) if admin_config else None,
        internal_port=internal_port,
    )
    (state_dir / "broker.json").write_text(json.dumps(asdict(info), indent=2) + "\n")
    return info


def status(state_dir: Path | None = None) -> BrokerStatus:
    state_dir = (state_dir or default_state_dir()).resolve()
    info = BrokerInfo.load(state_dir)
    if info is None:
        return BrokerStatus(False, None, f"no broker is running from {state_dir}")
    if not _is_our_broker(info.pid, state_dir):
        return BrokerStatus(
            False, info, f"no broker is running from {state_dir} (pid {info.pid} has exited)"
        )
    return BrokerStatus(True, info, f"broker running at {info.bootstrap} (pid {info.pid})")


def stop(state_dir: Path | None = None, *, timeout: float = 30.0) -> BrokerStatus:
    """Stop the broker this launcher started from *state_dir*; never signal anything else."""
    state_dir = (state_dir or default_state_dir()).resolve()
    current = status(state_dir)
    if not current.running or current.info is None:
        (state_dir / "broker.json").unlink(missing_ok=True)
        return current
    pid = current.info.pid
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _is_our_broker(pid, state_dir):
        _reap(pid)
        time.sleep(0.2)
    if _is_our_broker(pid, state_dir):
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        _reap(pid)
    (state_dir / "broker.json").unlink(missing_ok=True)
    return BrokerStatus(False, current.info, f"stopped the broker (pid {pid})")


def _reap(pid: int) -> None:
    """Collect the exit status if the broker is our child (a zombie still shows in /proc)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
