"""A real Apache Kafka broker (KRaft, single node), or a replicated cluster of them, started from
Maven Central jars.

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

:func:`start_cluster` (``pcfx broker start --nodes 3``) runs N combined broker+controller nodes
on loopback, all voters of one static KRaft quorum, from the same jars: each node has its own
ports and folder (``<state dir>/node-<id>``: config, data, ``broker.log``), and ``cluster.json``
records them. Topics are replicated to ``min(3, N)`` nodes with ``min.insync.replicas=2`` from
three nodes on (:func:`cluster_replication`; the consumer offsets and the transaction state
too), so with ``acks=all`` one node may be killed without losing an acknowledged record and
without refusing writes. The :class:`Cluster` handle is the fault tests' API: ``kill(node)``
(SIGKILL), ``restart(node)`` (on its data), ``pause(node)``/``resume(node)`` (SIGSTOP/SIGCONT).
:func:`status` and :func:`stop` handle a cluster like a broker (``pcfx broker stop`` stops every
node), and :mod:`infra.kafka.provision` reuses a running one with every node as bootstrap.

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
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from pcf_exchange.contracts.errors import BrokerError, InfrastructureError
from pcf_exchange.contracts.kafka_client import KafkaClientSettings, write_client_properties
from pcf_exchange.contracts.topics import replication_for

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "BrokerInfo",
    "BrokerStatus",
    "Cluster",
    "ClusterInfo",
    "NodeInfo",
    "cluster_config",
    "cluster_replication",
    "ensure_jars",
    "java_tool",
    "read_log_tail",
    "start",
    "start_cluster",
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
    with resources.as_file(resources.files("pcf_exchange.infra.kafka") / "pom.xml") as pom:
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
    if ClusterInfo.load(state_dir) is not None and status(state_dir).running:
        raise BrokerError(
            f"a cluster runs from {state_dir} (asked for a single broker)",
            hint=f"Stop it first: pcfx broker stop --state-dir {state_dir}",
        )
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
    template = resources.files("pcf_exchange.infra.kafka").joinpath(name).read_text()
    config = state_dir / "server.properties"
    values: dict[str, object] = {
        "port": port,
        "controller_port": controller_port,
        "data_dir": data_dir,
    }
    admin_password = ""
    settings: KafkaClientSettings | None = None
    if secure:
        from pcf_exchange.infra.kafka.tls import make_broker_tls

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
    log4j.write_text(
        resources.files("pcf_exchange.infra.kafka").joinpath("log4j2.properties").read_text()
    )
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
    """The broker, or the cluster, running from *state_dir*: a cluster is running while any of
    its nodes is (its ``info`` is the cluster seen as one broker, see
    :meth:`ClusterInfo.as_broker`)."""
    state_dir = (state_dir or default_state_dir()).resolve()
    cluster = ClusterInfo.load(state_dir)
    if cluster is not None:
        alive = [n for n in cluster.nodes if _is_our_broker(n.pid, Path(n.state_dir))]
        if not alive:
            return BrokerStatus(
                False, None, f"no cluster is running from {state_dir} (every node has exited)"
            )
        return BrokerStatus(
            True,
            cluster.as_broker(alive[0]),
            f"cluster of {len(cluster.nodes)} nodes at {cluster.bootstrap}"
            f" ({len(alive)} running: nodes {', '.join(str(n.node_id) for n in alive)})",
        )
    info = BrokerInfo.load(state_dir)
    if info is None:
        return BrokerStatus(False, None, f"no broker is running from {state_dir}")
    if not _is_our_broker(info.pid, state_dir):
        return BrokerStatus(
            False, info, f"no broker is running from {state_dir} (pid {info.pid} has exited)"
        )
    return BrokerStatus(True, info, f"broker running at {info.bootstrap} (pid {info.pid})")


def stop(state_dir: Path | None = None, *, timeout: float = 30.0) -> BrokerStatus:
    """Stop the broker (or every node of the cluster) this launcher started from *state_dir*;
    never signal anything else."""
    state_dir = (state_dir or default_state_dir()).resolve()
    cluster = Cluster.load(state_dir)
    if cluster is not None:
        pids = cluster.stop(timeout=timeout)
        if not pids:
            return BrokerStatus(False, None, f"no cluster is running from {state_dir}")
        listed = ", ".join(str(pid) for pid in pids)
        return BrokerStatus(False, None, f"stopped the cluster's {len(pids)} nodes (pids {listed})")
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


# --- a replicated cluster (pcfx broker start --nodes N) ----------------------------------------

CLUSTER_RECORD = "cluster.json"
CLUSTER_JVM_OPTS = (
    "-Xms128m",
    "-Xmx384m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
)
"""Smaller heaps than a single broker's: N JVMs share the machine with the code under test."""
MAX_NODES = 5


def cluster_replication(nodes: int) -> tuple[int, int]:
    """(replication factor, ``min.insync.replicas``) for a cluster of *nodes* brokers, the
    broker defaults a node gets: the same rule the topic table applies to the topics it
    creates (:func:`contracts.topics.replication_for`)."""
    replication = replication_for(nodes)
    return replication.factor, replication.min_insync_replicas


@dataclass(frozen=True)
class NodeInfo:
    """One node of a local cluster: a combined broker and controller (a quorum voter)."""

    node_id: int
    pid: int
    port: int
    controller_port: int
    state_dir: str
    """The node's own folder (``<cluster dir>/node-<id>``): config, data, ``broker.log``."""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class ClusterInfo:
    """What ``cluster.json`` records about a cluster this launcher started."""

    nodes: tuple[NodeInfo, ...]
    cluster_id: str
    kafka_version: str
    state_dir: str
    replication_factor: int
    min_insync_replicas: int
    started_at: float
    ready_after_s: float

    @property
    def bootstrap(self) -> str:
        """Every node's address: a client reaches the cluster through whichever answers."""
        return ",".join(node.address for node in self.nodes)

    def node(self, node_id: int) -> NodeInfo:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise BrokerError(
            f"the cluster in {self.state_dir} has no node {node_id}"
            f" (its nodes are {', '.join(str(n.node_id) for n in self.nodes)})"
        )

    def as_broker(self, running: NodeInfo) -> BrokerInfo:
        """The cluster seen as one broker (``pcfx broker status``, :mod:`infra.kafka.provision`):
        the bootstrap lists every node; the pid and ports are those of *running*."""
        return BrokerInfo(
            pid=running.pid,
            port=running.port,
            controller_port=running.controller_port,
            bootstrap=self.bootstrap,
            kafka_version=self.kafka_version,
            state_dir=self.state_dir,
            started_at=self.started_at,
            ready_after_s=self.ready_after_s,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def load(cls, state_dir: Path) -> ClusterInfo | None:
        path = state_dir / CLUSTER_RECORD
        try:
            raw = json.loads(path.read_text())
            return cls(**{**raw, "nodes": tuple(NodeInfo(**n) for n in raw["nodes"])})
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, KeyError) as exc:
            raise InfrastructureError(
                f"'{path}' is not a cluster record this launcher wrote ({exc})",
                hint=f"Remove '{path}' if no cluster is running from {state_dir}.",
            ) from exc


def cluster_config(
    node_id: int, ports: Sequence[tuple[int, int]], data_dir: Path, *, template: str | None = None
) -> str:
    """``server.properties`` of node *node_id* (1-based) of a cluster whose nodes listen on
    *ports* (broker, controller) in node order: every node is a voter of one static quorum."""
    if not 1 <= node_id <= len(ports):
        raise ValueError(f"node {node_id} is not one of the cluster's 1..{len(ports)}")
    replication, min_isr = cluster_replication(len(ports))
    voters = ",".join(f"{i}@127.0.0.1:{ctl}" for i, (_, ctl) in enumerate(ports, start=1))
    port, controller_port = ports[node_id - 1]
    text = (
        template
        or resources.files("pcf_exchange.infra.kafka")
        .joinpath("server-cluster.properties.template")
        .read_text()
    )
    return string.Template(text).substitute(
        node_id=node_id,
        voters=voters,
        port=port,
        controller_port=controller_port,
        data_dir=data_dir,
        replication=replication,
        min_isr=min_isr,
    )


def _distinct_free_ports(count: int) -> list[int]:
    """*count* different free ports (the OS may hand one out twice between binds)."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = free_port()
        if port not in chosen:
            chosen.append(port)
    return chosen


def _java_command(lib: Path, log4j: Path) -> list[str]:
    return ["java", *CLUSTER_JVM_OPTS, f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{lib}/*"]


def _spawn_node(java: list[str], node_dir: Path) -> subprocess.Popen[bytes]:
    """Start one node's JVM detached (its own session), appending to its ``broker.log``."""
    with (node_dir / "broker.log").open("ab") as log_file:
        return subprocess.Popen(
            [*java, BROKER_MAIN, str(node_dir / "server.properties")],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _wait_cluster(
    bootstrap: str, expected: int, procs: dict[int, subprocess.Popen[bytes]], state_dir: Path
) -> None:
    """Wait until the cluster's metadata lists *expected* serving brokers (or a node died)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + READY_TIMEOUT_S * 2
    last = "no answer yet"
    while time.monotonic() < deadline:
        for node_id, proc in procs.items():
            if proc.poll() is not None:
                node_dir = state_dir / f"node-{node_id}"
                raise BrokerError(
                    f"node {node_id} exited with code {proc.returncode} before the cluster was"
                    f" ready; last lines of {node_dir / 'broker.log'}:\n{read_log_tail(node_dir)}",
                    hint="Fix what the log says (often a taken port or a full disk) and start"
                    " again.",
                )
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap, request_timeout_ms=3000, client_id="pcfx-launcher"
            )
            try:
                brokers = _unfenced(admin.describe_cluster())
            finally:
                admin.close()
            if len(brokers) >= expected:
                return
            last = f"{len(brokers)} of {expected} brokers registered"
        except (KafkaError, OSError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    raise BrokerError(
        f"the cluster did not list {expected} brokers within {READY_TIMEOUT_S * 2:.0f} s ({last})",
        hint=f"Look at the nodes' logs: {state_dir}/node-*/broker.log",
    )


def _unfenced(described: dict[str, Any]) -> set[int]:
    """The ids of the brokers a ``describe_cluster`` answer lists as serving (not fenced)."""
    return {int(b["broker_id"]) for b in described["brokers"] if not b.get("is_fenced")}


def start_cluster(
    state_dir: Path | None = None, *, nodes: int = 3, version: str | None = None
) -> Cluster:
    """Start a cluster of *nodes* combined broker+controller nodes on loopback from
    *state_dir* (each node in ``node-<id>``, with fresh data), or return the one running there.

    All nodes are voters of one static KRaft quorum; topics are replicated to
    ``min(3, nodes)`` nodes with ``min.insync.replicas`` 2 from three nodes on (also for the
    consumer offsets and the transaction state). A single broker already running from
    *state_dir* is a :class:`BrokerError` (stop it first)."""
    if not 1 <= nodes <= MAX_NODES:
        raise BrokerError(
            f"--nodes must be between 1 and {MAX_NODES} (got {nodes})",
            hint="Use 3 for a replicated cluster that survives losing one node.",
        )
    state_dir = (state_dir or default_state_dir()).resolve()
    existing = ClusterInfo.load(state_dir)
    if existing is not None and any(
        _is_our_broker(n.pid, Path(n.state_dir)) for n in existing.nodes
    ):
        if len(existing.nodes) != nodes:
            raise BrokerError(
                f"a cluster of {len(existing.nodes)} nodes runs from {state_dir}"
                f" (asked for {nodes})",
                hint=f"Stop it first: pcfx broker stop --state-dir {state_dir}",
            )
        return Cluster(existing)
    if status(state_dir).running:
        raise BrokerError(
            f"a single broker runs from {state_dir} (asked for a cluster of {nodes} nodes)",
            hint=f"Stop it first: pcfx broker stop --state-dir {state_dir}",
        )
    version = version or kafka_version()
    began = time.monotonic()
    check_java()
    lib = ensure_jars(version)
    flat = _distinct_free_ports(2 * nodes)
    ports = [(flat[2 * i], flat[2 * i + 1]) for i in range(nodes)]
    state_dir.mkdir(parents=True, exist_ok=True)
    log4j = state_dir / "log4j2.properties"
    log4j.write_text(
        resources.files("pcf_exchange.infra.kafka").joinpath("log4j2.properties").read_text()
    )
    java = _java_command(lib, log4j)
    cluster_id = subprocess.run(
        [*java, "kafka.tools.StorageTool", "random-uuid"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.strip()
    template = resources.files("pcf_exchange.infra.kafka").joinpath(
        "server-cluster.properties.template"
    )
    text = template.read_text()
    for node_id in range(1, nodes + 1):
        node_dir = state_dir / f"node-{node_id}"
        shutil.rmtree(node_dir, ignore_errors=True)
        node_dir.mkdir(parents=True)
        config = node_dir / "server.properties"
        config.write_text(cluster_config(node_id, ports, node_dir / "data", template=text))
        fmt = subprocess.run(
            [*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if fmt.returncode != 0:
            raise BrokerError(
                f"formatting the storage of node {node_id} failed:\n{fmt.stdout}{fmt.stderr}"
            )
    procs = {i: _spawn_node(java, state_dir / f"node-{i}") for i in range(1, nodes + 1)}
    bootstrap = ",".join(f"127.0.0.1:{port}" for port, _ in ports)
    replication, min_isr = cluster_replication(nodes)
    info = ClusterInfo(
        nodes=tuple(
            NodeInfo(
                i, procs[i].pid, ports[i - 1][0], ports[i - 1][1], str(state_dir / f"node-{i}")
            )
            for i in range(1, nodes + 1)
        ),
        cluster_id=cluster_id,
        kafka_version=version,
        state_dir=str(state_dir),
        replication_factor=replication,
        min_insync_replicas=min_isr,
        started_at=time.time(),
        ready_after_s=0.0,
    )
    (state_dir / CLUSTER_RECORD).write_text(info.to_json())  # recorded at once: stop finds it
    try:
        _wait_cluster(bootstrap, nodes, procs, state_dir)
    except BaseException:
        Cluster(info).stop()
        raise
    info = replace(info, ready_after_s=round(time.monotonic() - began, 2))
    (state_dir / CLUSTER_RECORD).write_text(info.to_json())
    return Cluster(info)


class Cluster:
    """A handle on a running local cluster, for the fault tests: kill, restart, pause and resume
    one node by id, or stop them all. Only processes this launcher started are ever signalled
    (the pid must still run ``kafka.Kafka`` with that node's config); each change of pid is
    written back to ``cluster.json``."""

    def __init__(self, info: ClusterInfo) -> None:
        self.info = info
        self.state_dir = Path(info.state_dir)

    @classmethod
    def load(cls, state_dir: Path | None = None) -> Cluster | None:
        info = ClusterInfo.load((state_dir or default_state_dir()).resolve())
        return None if info is None else cls(info)

    @property
    def bootstrap(self) -> str:
        return self.info.bootstrap

    @property
    def node_ids(self) -> tuple[int, ...]:
        return tuple(node.node_id for node in self.info.nodes)

    def running(self, node_id: int) -> bool:
        node = self.info.node(node_id)
        return _is_our_broker(node.pid, Path(node.state_dir))

    def _signal(self, node_id: int, sig: signal.Signals) -> NodeInfo:
        node = self.info.node(node_id)
        if not _is_our_broker(node.pid, Path(node.state_dir)):
            raise BrokerError(
                f"node {node_id} of the cluster in {self.state_dir} is not running"
                f" (pid {node.pid} has exited)",
                hint=f"Restart it first: Cluster.restart({node_id}).",
            )
        os.kill(node.pid, sig)
        return node

    def kill(self, node_id: int) -> None:
        """kill -9 node *node_id*: no shutdown, no flush, no leadership hand-over."""
        node = self._signal(node_id, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _is_our_broker(node.pid, Path(node.state_dir)):
            _reap(node.pid)
            time.sleep(0.1)

    def pause(self, node_id: int) -> None:
        """SIGSTOP node *node_id*: it holds its sockets open and answers nothing (a partition
        the others see as a silent node, not a refused connection)."""
        self._signal(node_id, signal.SIGSTOP)

    def resume(self, node_id: int) -> None:
        """SIGCONT a node :meth:`pause` stopped."""
        self._signal(node_id, signal.SIGCONT)

    def restart(self, node_id: int, *, wait: bool = True) -> NodeInfo:
        """Start node *node_id* again on its data (after :meth:`kill`; a running node is
        killed first) and, with *wait*, wait until the cluster lists it again."""
        node = self.info.node(node_id)
        node_dir = Path(node.state_dir)
        if _is_our_broker(node.pid, node_dir):
            self.kill(node_id)
        lib = ensure_jars(self.info.kafka_version)
        proc = _spawn_node(_java_command(lib, self.state_dir / "log4j2.properties"), node_dir)
        fresh = replace(node, pid=proc.pid)
        self.info = replace(
            self.info,
            nodes=tuple(fresh if n.node_id == node_id else n for n in self.info.nodes),
        )
        (self.state_dir / CLUSTER_RECORD).write_text(self.info.to_json())
        if wait:
            self.wait_listed(node_id, proc)
        return fresh

    def wait_listed(self, node_id: int, proc: subprocess.Popen[bytes] | None = None) -> None:
        """Wait until node *node_id* answers and lists itself as a serving (unfenced) broker."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        node = self.info.node(node_id)
        deadline = time.monotonic() + READY_TIMEOUT_S * 2
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise BrokerError(
                    f"node {node_id} exited with code {proc.returncode} on restart; last lines"
                    f" of its log:\n{read_log_tail(Path(node.state_dir))}"
                )
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=node.address,
                    request_timeout_ms=3000,
                    client_id="pcfx-launcher",
                )
                try:
                    ids = _unfenced(admin.describe_cluster())
                finally:
                    admin.close()
                if node_id in ids:
                    return
            except (KafkaError, OSError, ValueError):
                pass
            time.sleep(0.5)
        raise BrokerError(f"node {node_id} was not listed again within {READY_TIMEOUT_S * 2:.0f} s")

    def stop(self, *, timeout: float = 30.0) -> list[int]:
        """Stop every node still running (paused ones are resumed first, so that SIGTERM is
        handled); SIGKILL after *timeout*. Returns the pids stopped; forgets the record."""
        stopped = []
        for node in self.info.nodes:
            node_dir = Path(node.state_dir)
            if not _is_our_broker(node.pid, node_dir):
                continue
            os.kill(node.pid, signal.SIGCONT)
            os.kill(node.pid, signal.SIGTERM)
            stopped.append(node.pid)
        deadline = time.monotonic() + timeout
        for node in self.info.nodes:
            node_dir = Path(node.state_dir)
            while time.monotonic() < deadline and _is_our_broker(node.pid, node_dir):
                _reap(node.pid)
                time.sleep(0.2)
            if _is_our_broker(node.pid, node_dir):
                os.kill(node.pid, signal.SIGKILL)
                time.sleep(0.3)
                _reap(node.pid)
        (self.state_dir / CLUSTER_RECORD).unlink(missing_ok=True)
        return stopped

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
