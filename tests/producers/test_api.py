"""The public surface of ``producers`` is explicit and pinned (httpx habit)."""

from __future__ import annotations

import importlib
import pkgutil

from pcf_exchange import producers


def test_all_lists_exactly_the_public_names() -> None:
    modules = {m.name for m in pkgutil.iter_modules(producers.__path__)}
    public = {n for n in vars(producers) if not n.startswith("_") and n not in modules}
    assert len(producers.__all__) == len(set(producers.__all__))
    assert set(producers.__all__) == public


def test_every_module_explains_itself() -> None:
    for module in pkgutil.iter_modules(producers.__path__):
        loaded = importlib.import_module(f"pcf_exchange.producers.{module.name}")
        doc = (loaded.__doc__ or "").strip()
        assert doc and len(doc.splitlines()[0]) > 20, f"producers.{module.name} needs a docstring"


def test_cli_apps_are_exposed() -> None:
    from pcf_exchange.pcfx.commands.publish import keys_app, publish_app

    assert {c.name for c in keys_app.registered_commands} == {
        "new",
        "show",
        "register",
        "revoke",
        "list",
    }
    assert {c.name for c in publish_app.registered_commands} == {"footprints", "bom", "factors"}
