"""Product category rules (PCRs): versioned rule packs per catalogue entry, and the check.

See :mod:`contracts.pcr._packs` (the packs and their loader) and :mod:`contracts.pcr._check`
(which pack a record falls under, and the rules in order) and :mod:`contracts.pcr._review`
(records held for review, and the officer's signed decisions).
"""

from pcf_exchange.contracts.pcr._check import (
    PACK_ID_PREFIX,
    PcrCheck,
    PcrFinding,
    PcrOutcome,
    check_bom,
    check_footprint,
    check_footprint_model,
    verify_footprint,
)
from pcf_exchange.contracts.pcr._packs import (
    STAGES,
    Boundary,
    DeclaredUnitRule,
    PackSet,
    PackSource,
    Range,
    RangeBasis,
    RulePack,
    default_packs,
    load_pack,
    load_packs,
)
from pcf_exchange.contracts.pcr._review import (
    PAYLOAD_REVIEW_DECISION,
    REVIEW_TOPICS,
    DecisionState,
    ReviewDecision,
    ReviewEvent,
    ReviewSerde,
    check_decision,
    decide,
    decision_statement,
    held_id,
    pending,
    review_schemas,
)

__all__ = [
    "PACK_ID_PREFIX",
    "PAYLOAD_REVIEW_DECISION",
    "REVIEW_TOPICS",
    "STAGES",
    "Boundary",
    "DecisionState",
    "DeclaredUnitRule",
    "PackSet",
    "PackSource",
    "PcrCheck",
    "PcrFinding",
    "PcrOutcome",
    "Range",
    "RangeBasis",
    "ReviewDecision",
    "ReviewEvent",
    "ReviewSerde",
    "RulePack",
    "check_bom",
    "check_decision",
    "check_footprint",
    "check_footprint_model",
    "decide",
    "decision_statement",
    "default_packs",
    "held_id",
    "load_pack",
    "load_packs",
    "pending",
    "review_schemas",
    "verify_footprint",
]
