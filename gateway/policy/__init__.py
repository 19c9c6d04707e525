"""Policy as code: load a versioned YAML policy, evaluate records against it, apply transforms.

``load_policy`` → ``evaluate(policy, record, recipient, purpose, counters, now)`` →
``apply(decision, record, pseudonym_secret=...)``. Pure: no I/O beyond reading the policy file.
"""

from pcf_exchange.gateway.policy._counters import CounterDelta, CounterState, counting_year
from pcf_exchange.gateway.policy._decision import (
    FieldDecision,
    Outcome,
    PolicyDecision,
    Reason,
    RecordRef,
    Verdict,
)
from pcf_exchange.gateway.policy._evaluate import evaluate, record_sha256
from pcf_exchange.gateway.policy._loader import (
    default_policy_path,
    load_policy,
    parse_policy,
    policy_schema,
)
from pcf_exchange.gateway.policy._model import (
    Action,
    ActionSpec,
    CounterMetric,
    DataClass,
    DestinationGroup,
    ExemptionBasis,
    GeneraliseTo,
    Grade,
    Mechanism,
    MechanismType,
    PersonalInformation,
    Policy,
    Recipient,
    RecipientType,
    Rule,
)
from pcf_exchange.gateway.policy._transforms import (
    ENCRYPTED_MARKER,
    PSEUDONYM_PREFIX,
    Outbound,
    apply,
    pseudonym,
    vault_context,
)

__all__ = [
    "ENCRYPTED_MARKER",
    "PSEUDONYM_PREFIX",
    "Action",
    "ActionSpec",
    "CounterDelta",
    "CounterMetric",
    "CounterState",
    "DataClass",
    "DestinationGroup",
    "ExemptionBasis",
    "FieldDecision",
    "GeneraliseTo",
    "Grade",
    "Mechanism",
    "MechanismType",
    "Outbound",
    "Outcome",
    "PersonalInformation",
    "Policy",
    "PolicyDecision",
    "Reason",
    "Recipient",
    "RecipientType",
    "RecordRef",
    "Rule",
    "Verdict",
    "apply",
    "counting_year",
    "default_policy_path",
    "evaluate",
    "load_policy",
    "parse_policy",
    "policy_schema",
    "pseudonym",
    "record_sha256",
    "vault_context",
]
