"""The declarations the EU asks for, built from a product's footprint, released only through the
gateway (issue #21 item 5).

Three pure builders, typed frozen dataclasses in, documents out, each with its own module
docstring on what goes in and from where:

- :func:`build_art7` (:mod:`~gateway.declarations._art7`): the EU Battery Regulation Art. 7
  carbon-footprint declaration of a battery model at a plant, and its battery passport part
  (Battery Pass data model 1.2.0, :meth:`Art7Declaration.passport`);
- :func:`build_cbam` (:mod:`~gateway.declarations._cbam`): the CBAM embedded-emissions
  communication of an installation's good;
- :func:`build_study` (:mod:`~gateway.declarations._study`): the GB/T 24067 / ISO 14067 study
  report.

Each reads a :class:`ProductSource` (:func:`read_source`: a ``pcf.products`` roll-up or PACT
JSON), cites the PCR pack the footprint meets (:func:`contracts.pcr.check_footprint`) and the
certificates that are valid for this very footprint (:func:`certificate_refs`), and raises
:class:`~contracts.errors.DeclarationInvalid` naming the field when something is missing.
Every document has ``to_json()`` (decimals as strings), ``sections()`` for the printable HTML
(:func:`render_html`), and is released by :func:`release`: decided, sealed and audited by
:class:`gateway.Gateway` like any other outbound transfer. A declaration the policy holds waits
as a :class:`HeldDeclaration` for a compliance officer's signed decision on ``pcf.approvals``;
:func:`prepare_approved_release` releases (or closes) it then. The command line is
``pcfx declarations art7|cbam|study`` (``pcfx/commands/declarations.py``).
"""

from pcf_exchange.gateway.declarations._art7 import (
    ART7_STAGES,
    PASSPORT_SCHEMA_URN,
    Art7Declaration,
    Art7Input,
    BatteryCategory,
    Manufacturer,
    Plant,
    StageFigure,
    build_art7,
    read_art7_input,
)
from pcf_exchange.gateway.declarations._cbam import (
    CBAM_HEADINGS,
    CbamCommunication,
    CbamInput,
    Installation,
    build_cbam,
    read_cbam_input,
)
from pcf_exchange.gateway.declarations._release import (
    DECLARATION_SOURCE,
    DEFAULT_PURPOSES,
    ApprovedRelease,
    Declaration,
    HeldDeclaration,
    Release,
    declaration_record,
    doc_id,
    prepare_approved_release,
    release,
)
from pcf_exchange.gateway.declarations._render import dump_json, render_html
from pcf_exchange.gateway.declarations._source import (
    CertificateRef,
    LineageRow,
    ProductSource,
    certificate_refs,
    read_source,
)
from pcf_exchange.gateway.declarations._study import (
    FactorCitation,
    StudyInput,
    StudyReport,
    build_study,
    read_study_input,
)

__all__ = [
    "ART7_STAGES",
    "CBAM_HEADINGS",
    "DECLARATION_SOURCE",
    "DEFAULT_PURPOSES",
    "PASSPORT_SCHEMA_URN",
    "ApprovedRelease",
    "Art7Declaration",
    "Art7Input",
    "BatteryCategory",
    "CbamCommunication",
    "CbamInput",
    "CertificateRef",
    "Declaration",
    "FactorCitation",
    "HeldDeclaration",
    "Installation",
    "LineageRow",
    "Manufacturer",
    "Plant",
    "ProductSource",
    "Release",
    "StageFigure",
    "StudyInput",
    "StudyReport",
    "build_art7",
    "build_cbam",
    "build_study",
    "certificate_refs",
    "declaration_record",
    "doc_id",
    "dump_json",
    "prepare_approved_release",
    "read_art7_input",
    "read_cbam_input",
    "read_source",
    "read_study_input",
    "release",
    "render_html",
]
