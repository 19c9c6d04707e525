"""Principals and their ACLs on a secured broker, through Kafka's admin API (confluent-kafka).

:func:`add_tenant` creates a SCRAM-SHA-512 credential for ``User:<name>``
(``alter_user_scram_credentials``) and the ALLOW ACLs its role gives (``create_acls``; the table
is :mod:`contracts.acl`), then writes the tenant's client properties file once, mode 0600.
:func:`list_tenants` reads credentials and ACLs back; :func:`remove_tenant` deletes both.
The admin client connects with this process's settings (:mod:`contracts.kafka_client`): the
operator's ``admin.properties`` of ``pcfx broker start --secure``, or any super user's.
"""

from __future__ import annotations

import re
import secrets
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from pcf_exchange.contracts.acl import ROLES, Grant, grants_for
from pcf_exchange.contracts.errors import BrokerError, ContractError
from pcf_exchange.contracts.kafka_client import (
    KafkaClientSettings,
    client_settings,
    librdkafka_config,
    write_client_properties,
)

__all__ = [
    "RESERVED",
    "SCRAM_ITERATIONS",
    "Tenant",
    "TenantAdmin",
    "add_tenant",
    "list_tenants",
    "remove_tenant",
]

SCRAM_ITERATIONS = 8192
RESERVED = frozenset({"admin", "pcfx-broker", "ANONYMOUS"})
"""Names a tenant may not take: the super users of a secure broker, and the anonymous one."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_RESOURCE = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "transactional_id": ResourceType.TRANSACTIONAL_ID,
    "cluster": ResourceType.BROKER,
}
_PATTERN = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}


@dataclass(frozen=True)
class Tenant:
    """A principal as the broker knows it: its SCRAM mechanisms and its ACLs."""

    name: str
    mechanisms: tuple[str, ...]
    grants: tuple[Grant, ...]
    role: str | None = None
    """The role whose grants equal this principal's (``None``: no role matches exactly)."""
    config_file: str | None = None
    """The client properties file written by :func:`add_tenant` (only there)."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def principal(self) -> str:
        return f"User:{self.name}"


def check_name(name: str) -> str:
    if not _NAME.match(name) or name in RESERVED:
        raise ContractError(
            f"tenant name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter"
            f" or digit, and not one of {', '.join(sorted(RESERVED))} (got {name!r})",
            hint="It becomes the principal User:<name> and part of topic names"
            " (pcf.outbound.<name>): choose e.g. 'catl-ningde'.",
        )
    return name


def _binding(principal: str, grant: Grant) -> Any:
    return AclBinding(
        _RESOURCE[grant.resource],
        grant.name,
        _PATTERN[grant.pattern],
        principal,
        "*",
        AclOperation[grant.operation],
        AclPermissionType.ALLOW,
    )


def _grant(binding: Any) -> Grant:
    resource = {v: k for k, v in _RESOURCE.items()}.get(binding.restype, "cluster")
    pattern = (
        "prefixed" if binding.resource_pattern_type == ResourcePatternType.PREFIXED else "literal"
    )
    return Grant(resource, binding.name, pattern, binding.operation.name)  # type: ignore[arg-type]


def _filter(principal: str | None) -> Any:
    """Every ACL (of *principal*, if given): ``None`` matches any name or host."""
    anything: Any = None
    return AclBindingFilter(
        ResourceType.ANY,
        anything,
        ResourcePatternType.ANY,
        principal if principal is not None else anything,
        anything,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )


class TenantAdmin:
    """An admin client for principals and ACLs; every Kafka failure leaves as BrokerError."""

    def __init__(
        self, bootstrap: str, settings: KafkaClientSettings | None = None, timeout_s: float = 30.0
    ) -> None:
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        config = (settings.librdkafka() if settings is not None else librdkafka_config()) | {
            "bootstrap.servers": bootstrap
        }
        self._admin = AdminClient(config)

    def _fail(self, what: str, exc: BaseException) -> BrokerError:
        detail = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
        who = client_settings().username or "an anonymous client"
        hint = (
            "Connect as a super user (the admin.properties 'pcfx broker start --secure' wrote:"
            " --kafka-config FILE or KAFKA_CLIENT_CONFIG=FILE)."
            if "authoriz" in detail.lower() or "authentic" in detail.lower()
            else "Check that the broker runs (pcfx broker status) and is a secure one."
        )
        return BrokerError(f"{what} at {self.bootstrap} failed as {who}: {detail}", hint=hint)

    def require_cluster_admin(self) -> None:
        """Refuse early unless the broker lets this principal DESCRIBE and ALTER the cluster
        (what ACL and SCRAM administration need); the broker's own answer decides."""
        try:
            cluster = self._admin.describe_cluster(include_authorized_operations=True).result(
                timeout=self.timeout_s
            )
        except KafkaException as exc:
            raise self._fail("describing the cluster", exc) from exc
        allowed = {op.name for op in cluster.authorized_operations or ()}
        missing = {"DESCRIBE", "ALTER"} - allowed
        if missing:
            who = client_settings().username or "an anonymous client"
            raise BrokerError(
                f"the broker does not authorize {who} to administer principals: it may not"
                f" {' or '.join(sorted(missing))} the cluster (authorized:"
                f" {', '.join(sorted(allowed)) or 'nothing'})",
                hint="Connect as a super user: the admin.properties 'pcfx broker start --secure'"
                " wrote (--kafka-config FILE or KAFKA_CLIENT_CONFIG=FILE).",
            )

    def upsert_credential(self, name: str, password: str) -> None:
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        alteration = UserScramCredentialUpsertion(name, info, password.encode())
        for future in self._admin.alter_user_scram_credentials([alteration]).values():
            try:
                future.result(timeout=self.timeout_s)
            except KafkaException as exc:
                raise self._fail(f"creating the SCRAM credential of User:{name}", exc) from exc

    def delete_credential(self, name: str) -> bool:
        deletion = UserScramCredentialDeletion(name, ScramMechanism.SCRAM_SHA_512)
        for future in self._admin.alter_user_scram_credentials([deletion]).values():
            try:
                future.result(timeout=self.timeout_s)
            except KafkaException as exc:
                if "RESOURCE_NOT_FOUND" in str(exc) or "not found" in str(exc).lower():
                    return False
                raise self._fail(f"deleting the SCRAM credential of User:{name}", exc) from exc
        return True

    def credentials(self) -> dict[str, tuple[str, ...]]:
        """Every SCRAM user and its mechanisms."""
        try:
            pending: Any = self._admin.describe_user_scram_credentials()  # all users: one future
            described = pending.result(timeout=self.timeout_s)
        except KafkaException as exc:
            raise self._fail("listing SCRAM credentials", exc) from exc
        return {
            user: tuple(
                str(info.mechanism.name).replace("_", "-")
                for info in description.scram_credential_infos
            )
            for user, description in described.items()
        }

    def create_acls(self, principal: str, grants: Iterable[Grant]) -> None:
        bindings = [_binding(principal, g) for g in grants]
        if not bindings:
            return
        for binding, future in self._admin.create_acls(bindings).items():
            try:
                future.result(timeout=self.timeout_s)
            except KafkaException as exc:
                raise self._fail(f"creating ACL {binding} for {principal}", exc) from exc

    def acls(self, principal: str | None = None) -> dict[str, tuple[Grant, ...]]:
        """ALLOW ACLs by principal (all principals, or one)."""
        query = _filter(principal)
        try:
            found = self._admin.describe_acls(query).result(timeout=self.timeout_s)
        except KafkaException as exc:
            raise self._fail("listing ACLs", exc) from exc
        by_principal: dict[str, set[Grant]] = defaultdict(set)
        for binding in found:
            by_principal[binding.principal].add(_grant(binding))
        return {p: tuple(sorted(g)) for p, g in by_principal.items()}

    def delete_acls(self, principal: str) -> int:
        query = _filter(principal)
        deleted = 0
        for future in self._admin.delete_acls([query]).values():
            try:
                deleted += len(future.result(timeout=self.timeout_s))
            except KafkaException as exc:
                raise self._fail(f"deleting the ACLs of {principal}", exc) from exc
        return deleted


def _read_password(path: Path) -> str:
    try:
        password = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        error = ContractError(
            f"the password file {str(path)!r} cannot be read ({exc.strerror})",
            hint="Give a readable file holding the password on its first line.",
        )
        error.code = "unreadable_input"  # exit code 4, as every pcfx command's unreadable input
        raise error from exc
    if len(password) < 12:
        raise ContractError(
            f"the password in {str(path)!r} must be at least 12 characters (got {len(password)})",
            hint="Leave --password-file out to have a strong one generated.",
        )
    return password


def add_tenant(
    name: str,
    role: str,
    *,
    bootstrap: str,
    out: Path,
    prefix: str = "",
    app_id: str = "pcfx-streams",
    group: str = "pcfx-gateway",
    password_file: Path | None = None,
    force: bool = False,
    settings: KafkaClientSettings | None = None,
) -> Tenant:
    """Create User:*name* with *role*'s ACLs; write its client properties to *out* (0600)."""
    check_name(name)
    if role not in ROLES:
        raise ContractError(
            f"role must be one of {', '.join(ROLES)} (got {role!r})",
            hint="See 'pcfx tenants add --help' for what each role may do.",
        )
    if out.exists() and not force:
        raise ContractError(
            f"the client config {str(out)!r} exists already: its password is written once",
            hint="Choose another --out, or pass --force to replace the credential and the file.",
        )
    password = _read_password(password_file) if password_file else secrets.token_urlsafe(32)
    admin_settings = settings or client_settings()
    admin = TenantAdmin(bootstrap, admin_settings)
    admin.require_cluster_admin()
    grants = grants_for(role, name, prefix=prefix, app_id=app_id, group=group)
    admin.upsert_credential(name, password)
    principal = f"User:{name}"
    stale = set(admin.acls(principal).get(principal, ())) - set(grants)
    if stale:  # a re-added tenant gets exactly its role's grants
        admin.delete_acls(principal)
    admin.create_acls(principal, grants)
    tenant_settings = replace(
        admin_settings,
        security_protocol=admin_settings.security_protocol
        if admin_settings.uses_sasl
        else "SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        username=name,
        password=password,
        ssl_certificate_location=None,
        ssl_key_location=None,
        ssl_key_password=None,
        source=f"tenant {name}",
    )
    write_client_properties(out, tenant_settings, bootstrap=bootstrap)
    return Tenant(name, ("SCRAM-SHA-512",), grants, role, str(out))


def _role_of(
    name: str, grants: tuple[Grant, ...], prefix: str, app_id: str, group: str
) -> str | None:
    for role in ROLES:
        if grants_for(role, name, prefix=prefix, app_id=app_id, group=group) == grants:
            return role
    return None


def list_tenants(
    *,
    bootstrap: str,
    prefix: str = "",
    app_id: str = "pcfx-streams",
    group: str = "pcfx-gateway",
    settings: KafkaClientSettings | None = None,
) -> list[Tenant]:
    """Every SCRAM principal and every principal with ACLs, with the role its grants match."""
    admin = TenantAdmin(bootstrap, settings)
    # asked first: confluent-kafka 2.16.1 aborts the process after a refused
    # DescribeUserScramCredentials, and a refused DescribeAcls answers an empty list
    admin.require_cluster_admin()
    acls = admin.acls()
    credentials = admin.credentials()
    names = set(credentials) | {p.split(":", 1)[1] for p in acls if p.startswith("User:")}
    tenants = []
    for name in sorted(names):
        grants = acls.get(f"User:{name}", ())
        tenants.append(
            Tenant(
                name,
                credentials.get(name, ()),
                grants,
                _role_of(name, grants, prefix, app_id, group) if grants else None,
            )
        )
    return tenants


@dataclass(frozen=True)
class Removed:
    name: str
    credential_deleted: bool
    acls_deleted: int


def remove_tenant(
    name: str, *, bootstrap: str, settings: KafkaClientSettings | None = None
) -> Removed:
    """Delete User:*name*'s SCRAM credential and every ACL naming it."""
    check_name(name)
    admin = TenantAdmin(bootstrap, settings)
    admin.require_cluster_admin()
    deleted = admin.delete_acls(f"User:{name}")
    existed = name in admin.credentials()
    if existed:
        admin.delete_credential(name)
    return Removed(name, existed, deleted)
