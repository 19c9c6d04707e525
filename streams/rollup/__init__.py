r"""The pure roll-up core: product carbon footprints through every tier of a bill of materials.

No Kafka, faust, pydantic or I/O in here (ARCHITECTURE decision 5). The faust agents are thin
adapters around two state-transition functions, and batch mode runs the very same transitions
over an in-memory queue:

* :func:`component_step` ``(ComponentState | None, ComponentMessage) -> Step`` -- the side keyed
  by an input (product or factor): stores its value and subscribers, fans absolute values out
  (:func:`component_step_many` takes a batch for one input and sends each parent its last value);
* :func:`product_step` ``(ProductState | None, ProductMessage) -> Step`` -- the side keyed by the
  parent: stores BOM and input values, applies each new value to running sums by the difference
  it makes (``_running``), emits its new thin value on change (:func:`product_step_many` absorbs
  a batch for one product and updates once);
* :class:`Engine` -- local delivery: a batch applied to the states one process holds, in place,
  products lowest first and each once, values straight to local parents (``_engine``);
* :func:`run_batch` / :class:`Network` -- both sides over an in-memory queue until quiescence;
  a network kept in memory runs the steady-state update (new figures, same shape) on its flat
  mirror (``_flat``: one record of integers per node, objects built when read);
* :func:`hotspots` / :func:`contribution_tree` -- what contributes most, from lineage.

Inputs are :class:`ComponentFootprint`, :class:`Factor` and :class:`Bom` (with :class:`BomLine`
and :class:`OwnProcess`); the output is :class:`RollupResult` with :class:`LineageInput` entries,
built from scratch by :func:`compute_result` in batch mode, and at the edge, once, for what is
published (:attr:`ProductRolledUp.result`, from the product's running lines): between nodes
only thin :class:`SourceValue`\ s travel, whose :class:`Identity` (result id and content hash)
is resolved only when needed.
Which PACT figures are added up, and how shares, ratings and uncertainty are weighted, is written
down in the docstrings of ``_model`` and ``_result``.
"""

from __future__ import annotations

from ._batch import Network, children_first, run_batch
from ._component import (
    ComponentState,
    Subscription,
    component_step,
    component_step_many,
    offered,
)
from ._compute import (
    compute_result,
    line_multiplier,
    source_from_factor,
    source_from_footprint,
    source_from_result,
)
from ._engine import Delivery, Engine
from ._explain import ContributionNode, Hotspot, contribution_tree, hotspots
from ._messages import (
    BomDeclared,
    ChildValue,
    ComponentMessage,
    FactorPublished,
    FootprintDeclared,
    Message,
    Outcome,
    ProductMessage,
    ProductOffered,
    ProductRolledUp,
    Step,
    Subscribe,
    Unsubscribe,
    node_of,
)
from ._model import (
    CARBON_CONTENT_METRICS,
    DQR_RATINGS,
    FOSSIL_GHG_EMISSIONS,
    HEADLINE_METRIC,
    NOT_ROLLED_UP,
    OPTIONAL_EMISSION_METRICS,
    PCF_EXCLUDING_BIOGENIC_UPTAKE,
    PCF_INCLUDING_BIOGENIC_UPTAKE,
    REQUIRED_METRICS,
    ROLLED_UP_METRICS,
    UNSPECIFIED_STAGE,
    Bom,
    BomLine,
    ComponentFootprint,
    Factor,
    OwnProcess,
    Ref,
    RefKind,
)
from ._numbers import EXACT_CONTEXT, PRECISION, ROLLUP_CONTEXT, exact_context, rollup_context
from ._product import ChildSlot, ProductState, product_step, product_step_many
from ._result import (
    Identity,
    LineageInput,
    RollupResult,
    SourceKind,
    SourceValue,
    Status,
    Totals,
    Uncertainty,
)

__all__ = [
    "CARBON_CONTENT_METRICS",
    "DQR_RATINGS",
    "EXACT_CONTEXT",
    "FOSSIL_GHG_EMISSIONS",
    "HEADLINE_METRIC",
    "NOT_ROLLED_UP",
    "OPTIONAL_EMISSION_METRICS",
    "PCF_EXCLUDING_BIOGENIC_UPTAKE",
    "PCF_INCLUDING_BIOGENIC_UPTAKE",
    "PRECISION",
    "REQUIRED_METRICS",
    "ROLLED_UP_METRICS",
    "ROLLUP_CONTEXT",
    "UNSPECIFIED_STAGE",
    "Bom",
    "BomDeclared",
    "BomLine",
    "ChildSlot",
    "ChildValue",
    "ComponentFootprint",
    "ComponentMessage",
    "ComponentState",
    "ContributionNode",
    "Delivery",
    "Engine",
    "Factor",
    "FactorPublished",
    "FootprintDeclared",
    "Hotspot",
    "Identity",
    "LineageInput",
    "Message",
    "Network",
    "Outcome",
    "OwnProcess",
    "ProductMessage",
    "ProductOffered",
    "ProductRolledUp",
    "ProductState",
    "Ref",
    "RefKind",
    "RollupResult",
    "SourceKind",
    "SourceValue",
    "Status",
    "Step",
    "Subscribe",
    "Subscription",
    "Totals",
    "Uncertainty",
    "Unsubscribe",
    "children_first",
    "component_step",
    "component_step_many",
    "compute_result",
    "contribution_tree",
    "exact_context",
    "hotspots",
    "line_multiplier",
    "node_of",
    "offered",
    "product_step",
    "product_step_many",
    "rollup_context",
    "run_batch",
    "source_from_factor",
    "source_from_footprint",
    "source_from_result",
]
