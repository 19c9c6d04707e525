"""The public surface of ``contracts`` is explicit and pinned (httpx habit)."""

from __future__ import annotations

import importlib
import pkgutil

from pcf_exchange import contracts


def test_all_lists_exactly_the_public_names() -> None:
    modules = {m.name for m in pkgutil.iter_modules(contracts.__path__)}
    public = {name for name in dir(contracts) if not name.startswith("_") and name not in modules}
    assert len(contracts.__all__) == len(set(contracts.__all__))  # ruff RUF022 keeps it sorted
    assert set(contracts.__all__) == public
    # names load on first use: each is imported above (where it loads from) and loads
    assert set(contracts._homes()) == set(contracts.__all__)
    for name in contracts.__all__:
        assert getattr(contracts, name) is not None, name
    loaded = {name for name in vars(contracts) if not name.startswith("_") and name not in modules}
    assert loaded == set(contracts.__all__)


def test_every_module_explains_itself() -> None:
    for module in pkgutil.iter_modules(contracts.__path__):
        loaded = importlib.import_module(f"pcf_exchange.contracts.{module.name}")
        doc = (loaded.__doc__ or "").strip()
        assert doc and len(doc.splitlines()[0]) > 20, (
            f"contracts.{module.name} needs a module docstring"
        )


def test_error_tree() -> None:
    assert issubclass(contracts.ValidationFailed, contracts.ContractError)
    assert issubclass(contracts.UnknownSchemaError, contracts.SerdeError)
    assert issubclass(contracts.InvalidSchemaError, contracts.ContractError)
    assert issubclass(contracts.RegistryError, contracts.PcfError)
