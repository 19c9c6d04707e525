"""The faust adaptations (streams/_faust.py) hold only for the faust-streaming they were written
against: an upgrade fails here first, naming the module to re-check, and the private names they
reach into are still there."""

from __future__ import annotations

import importlib.metadata
import inspect

import faust
from faust.streams import Stream
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka

from pcf_exchange.streams import _faust


def test_faust_streaming_is_the_version_the_adaptations_were_written_against() -> None:
    installed = importlib.metadata.version("faust-streaming")
    assert installed == _faust.FAUST_STREAMING_VERSION, (
        f"faust-streaming {installed} is installed, but streams/_faust.py was written against"
        f" {_faust.FAUST_STREAMING_VERSION}: re-check every 'relies on' comment there (and"
        " faust-streaming/faust#596, which _Recovery works around), run the streams broker"
        " tests, then update FAUST_STREAMING_VERSION"
    )


def test_the_private_names_the_adaptations_use_are_there() -> None:
    assert callable(Stream._enable_passive)
    assert "enable_acks" in inspect.signature(Stream.__init__).parameters
    assert callable(faust.App._on_agent_error)
    assert inspect.iscoroutinefunction(Recovery.on_recovery_completed)
    assert isinstance(TableManager.recovery, property)
    assert callable(faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer)
    assert callable(faust_aiokafka.Consumer._new_consumer_thread)
    assert isinstance(faust.App.consumer_generation_id, int)  # (AppT's class attribute)


def test_a_table_write_goes_to_the_partition_it_is_made_for() -> None:
    from faust.streams import _current_event

    _faust.in_partition("t.pcf.rollup", 4)
    ref = _current_event.get()
    assert ref is not None
    event = ref()
    assert event is not None
    assert (event.message.topic, event.message.partition) == ("t.pcf.rollup", 4)


def test_the_table_internals_the_row_table_uses_are_there() -> None:
    from faust.stores import memory
    from faust.tables.base import Collection

    assert list(inspect.signature(Collection.apply_changelog_batch).parameters) == ["self", "batch"]
    table = _faust.row_table(faust.App("pin-row-table", store="memory://"), "nodes", 1, b"i")
    store = table.data
    assert isinstance(store, memory.Store)
    assert isinstance(store.data, dict)
    assert isinstance(store._key_partition, dict)
