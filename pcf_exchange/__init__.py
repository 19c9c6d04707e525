"""pcf-exchange: an event-driven exchange for product carbon footprints on Kafka.

The installed package is this one namespace: ``pcf_exchange.contracts`` (data contracts),
``pcf_exchange.producers`` (what suppliers run), ``pcf_exchange.streams`` (the stream
processors), ``pcf_exchange.gateway`` (outbound control, the PACT API, the console),
``pcf_exchange.infra`` (the local broker launcher) and ``pcf_exchange.pcfx`` (the one CLI).

In the repository those packages keep their top-level folders (ARCHITECTURE.md fixes the
layout); the entries of this folder are symbolic links to them, so the interpreter, the wheel
build, mypy and ruff all see each module under one name only: ``pcf_exchange.<package>``.
Benchmarks (``bench/``) and tests stay in the repository and are not installed.
"""
