"""The upgrade path of a prefixed deployment (issue #20): its subjects and the ids its records
carry were in the shared ``pcf._schemas``; ``pcfx schemas migrate`` copies them into
``<prefix>pcf._schemas`` keeping ids and versions, and services refuse to start until it has.

The plan is pure (:func:`contracts._registry.plan_migration`, no broker); the broker tests use
a private stand-in for the old shared topic (``--from``), so that no test writes the real one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from pcf_exchange.contracts import KafkaSchemaRegistry, RegistryError, schema_json
from pcf_exchange.contracts._registry import (
    CompatibilityLevel,
    RegisteredSchema,
    migrate_schemas,
    plan_migration,
    require_migrated,
    stranded_subjects,
)
from pcf_exchange.contracts._schemas import expanded
from pcf_exchange.pcfx.cli import app

A = schema_json("EmissionFactor")
B = json.dumps(  # another record name, the same fields
    {**expanded("EmissionFactor"), "name": "OtherFactor"}
)


def _v2() -> str:
    schema = expanded("EmissionFactor")
    schema["fields"].append({"name": "region", "type": ["null", "string"], "default": None})
    return json.dumps(schema)


def entry(subject: str, version: int, schema_id: int, schema: str = A) -> RegisteredSchema:
    return RegisteredSchema(subject, version, schema_id, schema)


# --- the plan (pure) ---------------------------------------------------------------------------


def test_an_empty_target_gets_every_entry_with_its_id_and_version() -> None:
    source = [entry("p.x-value", 1, 7), entry("p.x-value", 2, 9, _v2()), entry("p.y-value", 1, 7)]
    plan = plan_migration(source, [], target="p.pcf._schemas")
    assert plan.copies == tuple(sorted(source, key=lambda e: (e.subject, e.version)))
    assert plan.present == () and plan.conflicts == ()
    assert plan.subjects == ["p.x-value", "p.y-value"]
    plan.raise_for_conflicts()  # nothing to refuse


def test_running_it_again_copies_nothing() -> None:
    source = [entry("p.x-value", 1, 7), entry("p.x-value", 2, 9, _v2())]
    plan = plan_migration(source, source)
    assert plan.copies == () and plan.present == tuple(source) and plan.conflicts == ()


def test_a_version_the_target_holds_with_another_id_is_a_conflict_naming_it() -> None:
    plan = plan_migration([entry("p.x-value", 1, 7)], [entry("p.x-value", 1, 1)])
    assert plan.copies == ()
    assert plan.conflicts == (
        "subject 'p.x-value' version 1 (id 7): the target holds this version with id 1",
    )
    other = plan_migration([entry("p.x-value", 1, 7)], [entry("p.x-value", 1, 7, _v2())])
    assert other.conflicts == (
        "subject 'p.x-value' version 1 (id 7): the target holds this version with id 7"
        " and another schema",
    )


def test_an_id_taken_by_another_schema_is_a_conflict_and_refuses_the_whole_copy() -> None:
    plan = plan_migration(
        [entry("p.a-value", 1, 3), entry("p.x-value", 1, 7)],
        [entry("p.fresh-value", 1, 7, _v2())],
        source="old",
        target="p.pcf._schemas",
    )
    assert [e.subject for e in plan.copies] == ["p.a-value"]
    assert plan.conflicts == (
        "subject 'p.x-value' version 1 (id 7): id 7 is taken in the target by another schema"
        " (subject 'p.fresh-value' version 1)",
    )
    with pytest.raises(RegistryError) as info:
        plan.raise_for_conflicts()
    assert "cannot copy the schemas of 'old' into 'p.pcf._schemas'" in info.value.message
    assert "nothing was copied" in info.value.message and "id 7" in info.value.message
    assert "delete 'p.pcf._schemas'" in info.value.hint


def test_the_same_schema_under_its_id_in_another_subject_is_no_conflict() -> None:
    plan = plan_migration([entry("p.x-value", 1, 7)], [entry("p.y-value", 1, 7)])
    assert plan.copies == (entry("p.x-value", 1, 7),) and plan.conflicts == ()


def test_subject_levels_are_copied_for_the_chosen_subjects_where_they_differ() -> None:
    levels: dict[str | None, CompatibilityLevel] = {
        None: CompatibilityLevel.FULL,  # the old topic's global level stays there
        "p.x-value": CompatibilityLevel.NONE,
        "p.y-value": CompatibilityLevel.FORWARD,
        "q.x-value": CompatibilityLevel.NONE,  # another deployment's
    }
    plan = plan_migration(
        [entry("p.x-value", 1, 7), entry("p.y-value", 1, 7)],
        [],
        levels=levels,
        target_levels={"p.y-value": CompatibilityLevel.FORWARD},
    )
    assert plan.levels == (("p.x-value", CompatibilityLevel.NONE),)


# --- on a broker -------------------------------------------------------------------------------


@pytest.fixture
def legacy(kafka_bootstrap: str) -> Iterator[dict[str, Any]]:
    """A stand-in for the old shared topic: deployment ``one`` registered its subjects after
    another deployment's, so the ids its records carry (3, 1, 2) are the shared topic's."""
    old_topic = f"pcf._schemas.legacy-{uuid.uuid4().hex[:8]}"
    one, other = (f"m{uuid.uuid4().hex[:8]}." for _ in range(2))
    with KafkaSchemaRegistry(kafka_bootstrap, topic=old_topic, writer=True) as writer:
        writer.register(f"{other}pcf.factors-value", _v2())
        writer.register(f"{other}pcf.other-value", B)
        ids = {
            "factors": writer.register(f"{one}pcf.factors-value", A),
            "factors2": writer.register(f"{one}pcf.factors-value", _v2()),
            "other": writer.register(f"{one}pcf.other-value", B),
        }
        writer.set_compatibility(CompatibilityLevel.NONE, f"{one}pcf.other-value")
    yield {"topic": old_topic, "one": one, "other": other, "ids": ids}


@pytest.mark.broker
def test_a_prefixed_deployment_is_migrated_with_its_ids_and_then_starts(
    kafka_bootstrap: str, legacy: dict[str, Any]
) -> None:
    one, old_topic, ids = legacy["one"], legacy["topic"], legacy["ids"]
    assert ids == {"factors": 3, "factors2": 1, "other": 2}  # ids of the shared topic
    # before: the service check finds the deployment's subjects stranded, and refuses
    assert stranded_subjects(kafka_bootstrap, one, source_topic=old_topic) == [
        f"{one}pcf.factors-value",
        f"{one}pcf.other-value",
    ]
    with pytest.raises(RegistryError) as refused:
        require_migrated(kafka_bootstrap, one, source_topic=old_topic)
    assert f"'{one}pcf._schemas' is empty" in refused.value.message
    assert f"pcfx schemas migrate --from {old_topic}" in refused.value.hint

    dry = migrate_schemas(kafka_bootstrap, one, source_topic=old_topic, dry_run=True)
    assert [(e.subject, e.version, e.schema_id) for e in dry.copies] == [
        (f"{one}pcf.factors-value", 1, 3),
        (f"{one}pcf.factors-value", 2, 1),
        (f"{one}pcf.other-value", 1, 2),
    ]
    with KafkaSchemaRegistry(kafka_bootstrap, prefix=one) as target:
        assert target.subjects() == []  # the dry run wrote nothing

    done = migrate_schemas(kafka_bootstrap, one, source_topic=old_topic)
    assert done.copies == dry.copies and done.conflicts == ()
    with KafkaSchemaRegistry(kafka_bootstrap, prefix=one, writer=True) as target:
        assert [(e.subject, e.version, e.schema_id) for e in target.entries()] == [
            (e.subject, e.version, e.schema_id) for e in dry.copies
        ]
        assert target.compatibility(f"{one}pcf.other-value") is CompatibilityLevel.NONE
        assert not any(s.startswith(legacy["other"]) for s in target.subjects())
        # a record framed with the old id decodes through the deployment's own registry
        assert json.loads(target.get_schema(3)) == json.loads(A)
        # and a new registration never reuses a copied id
        assert target.register(f"{one}pcf.new-value", json.dumps(
            {**expanded("EmissionFactor"), "name": "NewFactor"}
        )) == 4  # fmt: skip

    again = migrate_schemas(kafka_bootstrap, one, source_topic=old_topic)
    assert again.copies == () and len(again.present) == 3 and again.levels == ()
    assert stranded_subjects(kafka_bootstrap, one, source_topic=old_topic) == []
    require_migrated(kafka_bootstrap, one, source_topic=old_topic)  # starts now


@pytest.mark.broker
def test_a_service_that_registered_first_makes_the_copy_refuse_and_write_nothing(
    kafka_bootstrap: str, legacy: dict[str, Any]
) -> None:
    one, old_topic = legacy["one"], legacy["topic"]
    with KafkaSchemaRegistry(kafka_bootstrap, prefix=one, writer=True) as fresh:
        assert fresh.register(f"{one}pcf.factors-value", _v2()) == 1  # version 1, another schema
    with pytest.raises(RegistryError) as info:
        migrate_schemas(kafka_bootstrap, one, source_topic=old_topic)
    message = info.value.message
    assert f"subject '{one}pcf.factors-value' version 1 (id 3)" in message
    assert "nothing was copied" in message
    with KafkaSchemaRegistry(kafka_bootstrap, prefix=one) as target:
        assert [(e.subject, e.version) for e in target.entries()] == [
            (f"{one}pcf.factors-value", 1)
        ]


@pytest.mark.broker
def test_pcfx_schemas_migrate_json_dry_run_then_copy(
    kafka_bootstrap: str, legacy: dict[str, Any]
) -> None:
    runner = CliRunner()
    one, old_topic = legacy["one"], legacy["topic"]
    base = ["schemas", "migrate", "--from", old_topic, "--bootstrap", kafka_bootstrap, "--json"]
    dry = runner.invoke(app, [*base, "--topic-prefix", one, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.stdout)  # (logs, if any, go to stderr)
    assert planned["dryRun"] is True and planned["copied"] == []
    assert [e["id"] for e in planned["toCopy"]] == [3, 1, 2]
    assert planned["target"] == f"{one}pcf._schemas"
    copied = json.loads(runner.invoke(app, [*base, "--topic-prefix", one]).stdout)
    assert [e["id"] for e in copied["copied"]] == [3, 1, 2]
    assert copied["compatibility"] == {f"{one}pcf.other-value": "NONE"}
    again = json.loads(runner.invoke(app, [*base, "--topic-prefix", one]).stdout)
    assert again["copied"] == [] and len(again["present"]) == 3
    table = runner.invoke(app, [*base[:-1], "--topic-prefix", one])
    assert table.exit_code == 0 and "0 copied, 3 already there" in table.output


def test_pcfx_schemas_migrate_without_a_prefix_says_what_to_set() -> None:
    result = CliRunner().invoke(
        app, ["schemas", "migrate", "--bootstrap", "127.0.0.1:1"], env={"PCFX_TOPIC_PREFIX": ""}
    )
    assert result.exit_code == 3
    assert "no topic prefix" in result.output and "PCFX_TOPIC_PREFIX" in result.output


@pytest.mark.broker
def test_gateway_runs_registry_refuses_an_unmigrated_deployment_and_says_what_to_run(
    kafka_bootstrap: str, legacy: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``gateway run`` opens its registry through ``_registry`` (``api serve`` and ``streams
    run`` call the same check); here the check reads the stand-in for the old topic."""
    import pcf_exchange.contracts._registry as registry_module
    from pcf_exchange.pcfx.commands._gateway_shared import _registry

    check = registry_module.require_migrated
    monkeypatch.setattr(
        registry_module,
        "require_migrated",
        lambda *a, **k: check(*a, **k, source_topic=legacy["topic"]),
    )
    one = legacy["one"]
    with pytest.raises(RegistryError) as refused:
        _registry(kafka_bootstrap, None, one, startup_s=1.0)
    assert "pcfx schemas migrate" in refused.value.hint
    _registry(kafka_bootstrap, None, one).close()  # a command (no start-up wait) is not checked
    migrate_schemas(kafka_bootstrap, one, source_topic=legacy["topic"])
    _registry(kafka_bootstrap, None, one, startup_s=1.0).close()
