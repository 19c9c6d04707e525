"""Who receives what: the subscription (agreement) list, a YAML file beside the policy.

The policy decides *what may go*; subscriptions decide *what is offered*: which recipients get
which products (glob patterns on the product id) or pilot categories, and for which purpose. A
record no subscription matches is not sent anywhere (and not audited: nothing was decided).
Every subscription must name a recipient the policy declares and a purpose the policy allows it:
a file that does not is refused as a whole.

Example (``gateway/policies/subscriptions.yaml``)::

    schema_version: 1
    subscriptions:
      - recipient: eu-battery-oem-de
        purpose: battery-regulation-art7
        products: ["urn:pact:example-cells.cn:*"]
        categories: [LITHIUM_BATTERY]
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pcf_exchange.contracts.errors import Violation
from pcf_exchange.gateway._errors import PolicyFileInvalid
from pcf_exchange.gateway.policy import Policy

__all__ = [
    "Subscription",
    "Subscriptions",
    "default_subscriptions_path",
    "load_subscriptions",
    "parse_subscriptions",
]

_CACHE_LIMIT = 100_000


def default_subscriptions_path() -> str:
    """The shipped subscriptions (``gateway/policies/subscriptions.yaml``), found from this file
    (as :func:`gateway.policy.default_policy_path`), not by package name."""
    return str(Path(__file__).resolve().parent / "policies" / "subscriptions.yaml")


@dataclass(frozen=True)
class Subscription:
    recipient: str
    purpose: str
    products: tuple[str, ...] = ("*",)
    """``fnmatch`` patterns on the product id (``urn:pact:example.cn:*``)."""
    categories: tuple[str, ...] | None = None
    """Pilot categories (``LITHIUM_BATTERY``); ``None`` means any, including none."""

    def matches(self, product_id: str, category: str | None) -> bool:
        if self.categories is not None and category not in self.categories:
            return False
        return any(fnmatch.fnmatchcase(product_id, p) for p in self.products)


@dataclass(frozen=True)
class Subscriptions:
    items: tuple[Subscription, ...]
    source: str = "<memory>"
    _cache: dict[tuple[str, str | None], tuple[tuple[str, str], ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def recipients(self) -> tuple[str, ...]:
        return tuple(sorted({s.recipient for s in self.items}))

    def routes(self, product_id: str, category: str | None) -> tuple[tuple[str, str], ...]:
        """``(recipient, purpose)`` pairs for this product, in file order, without repeats."""
        key = (product_id, category)
        found = self._cache.get(key)
        if found is None:
            pairs = [
                (s.recipient, s.purpose) for s in self.items if s.matches(product_id, category)
            ]
            found = tuple(dict.fromkeys(pairs))
            if len(self._cache) > _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = found
        return found


def _strings(value: Any, path: str, problems: list[Violation]) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        problems.append(Violation.of(path, "type", "must be a non-empty list of strings", value))
        return None
    return tuple(value)


def parse_subscriptions(data: Any, policy: Policy, *, source: str = "<memory>") -> Subscriptions:
    """Check a parsed subscriptions document against *policy*; raise listing every problem."""
    problems: list[Violation] = []
    if not isinstance(data, Mapping):
        raise PolicyFileInvalid(
            [Violation("", "type", "must be a mapping with schema_version and subscriptions")],
            source=source,
        )
    if data.get("schema_version") != 1:
        problems.append(
            Violation.of("schema_version", "value", "must be 1", data.get("schema_version"))
        )
    unknown = sorted(set(data) - {"schema_version", "subscriptions"})
    for key in unknown:
        problems.append(Violation(str(key), "unknown_field", "is not a subscriptions field"))
    raw = data.get("subscriptions")
    items: list[Subscription] = []
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        problems.append(Violation.of("subscriptions", "type", "must be a list", raw))
        raw = []
    for i, entry in enumerate(raw):
        here = f"subscriptions[{i}]"
        if not isinstance(entry, Mapping):
            problems.append(Violation.of(here, "type", "must be a mapping", entry))
            continue
        for key in sorted(set(entry) - {"recipient", "purpose", "products", "categories"}):
            problems.append(Violation(f"{here}.{key}", "unknown_field", "is not a field"))
        recipient, purpose = entry.get("recipient"), entry.get("purpose")
        target = policy.recipients.get(recipient) if isinstance(recipient, str) else None
        if target is None:
            problems.append(
                Violation.of(
                    f"{here}.recipient",
                    "unknown_recipient",
                    "must be a recipient the policy declares"
                    f" ({', '.join(sorted(policy.recipients))})",
                    recipient,
                )
            )
        if not isinstance(purpose, str) or not purpose:
            problems.append(Violation.of(f"{here}.purpose", "type", "must be a string", purpose))
        elif target is not None and purpose not in target.purposes:
            problems.append(
                Violation.of(
                    f"{here}.purpose",
                    "purpose_not_allowed",
                    f"must be one of the purposes the policy allows '{recipient}'"
                    f" ({', '.join(sorted(target.purposes))})",
                    purpose,
                )
            )
        products = (
            _strings(entry["products"], f"{here}.products", problems)
            if "products" in entry
            else ("*",)
        )
        categories = (
            _strings(entry["categories"], f"{here}.categories", problems)
            if "categories" in entry
            else None
        )
        if isinstance(recipient, str) and isinstance(purpose, str) and products is not None:
            items.append(Subscription(recipient, purpose, products, categories))
    if problems:
        raise PolicyFileInvalid(problems, source=source)
    return Subscriptions(tuple(items), source)


def load_subscriptions(path: str | Path, policy: Policy) -> Subscriptions:
    """Read and check a subscriptions YAML file (see the module docstring)."""
    from pcf_exchange.contracts.errors import ContractError

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ContractError(f"cannot read subscriptions file {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyFileInvalid(
            [Violation("", "yaml", f"is not valid YAML: {exc}")], source=str(path)
        ) from exc
    return parse_subscriptions(data, policy, source=str(path))
