"""The headline figure against Brightway (bw2data 4.8 + bw2calc 3.1.0): a technosphere solve.

Each product becomes an activity producing 1 declared unit, with its own direct emissions as a
biosphere flow (characterisation factor 1) and each input as a technosphere exchange of the
line's multiplier -- taken from the Fraction oracle, so Brightway checks the linear algebra of the
roll-up independently of our unit code. ``LCA.lci(factorize=True)`` factorises once, then
``LCA.lcia(demand=...)`` re-solves per product.

Two ways in, as bw2calc 3.1 offers both:

* **bw2data** ("Brightway 2" calling convention, the sketch in reference/streaming.md section 5).
  bw2data 4.8 processes exchanges through ``bw_processing.utils.resolve_dict_iterator``, which
  stores amounts as **float32**, so agreement is ~1e-7 at best: checked to 1e-6 relative.
* **bw_processing datapackages** ("2.5" convention, ``LCA(demand, data_objs=[dp])``) with float64
  vectors: the same solve at full double precision, checked to **1e-9** relative.

The random chains here are *well conditioned* (every technosphere coefficient below 1): without
pypardiso/UMFPACK, bw2calc factorises with SuperLU, whose partial pivoting leaves the diagonal of
a BOM matrix once coefficients exceed 1, and we measured relative errors up to ~1e-8 then (the
exact Fraction oracle of the other tests covers those chains; unit conversions are exact there).

Brightway writes a project directory, so ``BRIGHTWAY2_DIR`` points at a temporary directory
*before* bw2data is imported, and the directory is removed afterwards.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from decimal import Decimal
from itertools import count
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from pcf_exchange.streams.rollup import ComponentFootprint, Factor, run_batch
from tests.streams._rollup_helpers import bom, fp, line
from tests.streams._rollup_oracle import evaluate
from tests.streams._rollup_scenarios import Scenario, bom_depth, diamonds, scenarios

_BW_DIR = tempfile.mkdtemp(prefix="pcfx-brightway-")
atexit.register(shutil.rmtree, _BW_DIR, True)
os.environ["BRIGHTWAY2_DIR"] = _BW_DIR
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    bd = pytest.importorskip("bw2data")
    bc = pytest.importorskip("bw2calc")

REL = 1e-9
REL_BW2DATA = 1e-6  # bw2data stores exchange amounts as float32
_names = count()


@pytest.fixture(scope="module")
def brightway() -> Iterator[Any]:
    if not str(bd.projects.dir).startswith(_BW_DIR):  # bw2data was imported elsewhere first
        pytest.skip("bw2data was imported before BRIGHTWAY2_DIR could point at a temp dir")
    bd.projects.set_current("pcfx-rollup-oracle")
    bd.Database("bio").write(
        {("bio", "co2e"): {"name": "CO2e", "type": "emission", "unit": "kilogram"}}
    )
    bd.Method(("gwp",)).write([(("bio", "co2e"), 1.0)])
    yield bd
    shutil.rmtree(_BW_DIR, ignore_errors=True)


def technosphere(scenario: Scenario) -> dict[str, tuple[float, dict[str, float]]]:
    """Activity code -> (own emission, {input code: amount}), from the oracle's multipliers."""
    footprints, boms, factors = scenario.latest()
    oracle = evaluate(footprints, boms, factors)
    declared = {f.product_id for f in footprints}

    def node_of(ref: str) -> str:
        kind, _, ident = ref.partition(":")
        if kind == "product":
            return f"fp:{ident}" if ident in declared else f"bom:{ident}"
        return ref

    activities: dict[str, tuple[float, dict[str, float]]] = {}
    for pid, value in oracle.items():
        assert value.status == "complete", (pid, value.missing)
        inputs: dict[str, float] = {}
        own = 0.0
        for ref, k in value.lines:
            if ref == "own":
                own = float(k)
            else:
                inputs[node_of(ref)] = inputs.get(node_of(ref), 0.0) + float(k)
        activities[f"bom:{pid}"] = (own, inputs)
    f: ComponentFootprint | Factor
    for f in footprints:
        activities[f"fp:{f.product_id}"] = (float(f.figures[E]), {})
    for f in factors:
        activities[f"factor:{f.factor_id}"] = (float(f.figures[E]), {})
    return activities


def bw2data_scores(scenario: Scenario) -> dict[str, float]:
    """Brightway's score per product, through a bw2data database (float32 amounts)."""
    db = f"bom{next(_names)}"

    def activity(code: str, own: float, inputs: dict[str, float]) -> dict[str, Any]:
        exchanges = [
            {"input": (db, code), "amount": 1.0, "type": "production"},
            {"input": ("bio", "co2e"), "amount": own, "type": "biosphere"},
        ]
        exchanges += [
            {"input": (db, child), "amount": amount, "type": "technosphere"}
            for child, amount in inputs.items()
        ]
        return {"name": code, "unit": "unit", "type": "process", "exchanges": exchanges}

    activities = technosphere(scenario)
    products = [code for code in activities if code.startswith("bom:")]
    data = {(db, code): activity(code, *activities[code]) for code in activities}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bd.Database(db).write(data)
        first = bd.get_node(database=db, code=products[0])
        lca = bc.LCA({first: 1}, method=("gwp",))
        lca.lci(factorize=True)
        lca.lcia()
        scores = {}
        for code in products:
            node = bd.get_node(database=db, code=code)
            lca.lcia(demand={node.id: 1})
            scores[code.removeprefix("bom:")] = float(lca.score)
    return scores


def datapackage_scores(scenario: Scenario) -> dict[str, float]:
    """Brightway's score per product, from a float64 bw_processing datapackage."""
    import bw_processing as bwp
    import numpy as np

    activities = technosphere(scenario)
    ids = {code: i for i, code in enumerate(sorted(activities))}
    flow = len(ids)
    tech_rows, tech_data, tech_flip, bio_rows, bio_data = [], [], [], [], []
    for code, (own, inputs) in activities.items():
        tech_rows.append((ids[code], ids[code]))
        tech_data.append(1.0)
        tech_flip.append(False)
        for child, amount in inputs.items():
            tech_rows.append((ids[child], ids[code]))
            tech_data.append(amount)
            tech_flip.append(True)
        bio_rows.append((flow, ids[code]))
        bio_data.append(own)
    dp = bwp.create_datapackage()
    dp.add_persistent_vector(
        matrix="technosphere_matrix",
        indices_array=np.array(tech_rows, dtype=bwp.INDICES_DTYPE),
        data_array=np.array(tech_data, dtype=np.float64),
        flip_array=np.array(tech_flip, dtype=bool),
        name="technosphere",
    )
    dp.add_persistent_vector(
        matrix="biosphere_matrix",
        indices_array=np.array(bio_rows, dtype=bwp.INDICES_DTYPE),
        data_array=np.array(bio_data, dtype=np.float64),
        name="biosphere",
    )
    dp.add_persistent_vector(
        matrix="characterization_matrix",
        indices_array=np.array([(flow, flow)], dtype=bwp.INDICES_DTYPE),
        data_array=np.array([1.0]),
        name="gwp",
    )
    products = [code for code in activities if code.startswith("bom:")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lca = bc.LCA({ids[products[0]]: 1}, data_objs=[dp])
        lca.lci(factorize=True)
        lca.lcia()
        scores = {}
        for code in products:
            lca.lcia(demand={ids[code]: 1})
            scores[code.removeprefix("bom:")] = float(lca.score)
    return scores


E = "pcfExcludingBiogenicUptake"


def assert_close(ours: Decimal, theirs: float, what: str, rel: float = REL) -> None:
    assert abs(float(ours) - theirs) <= rel * max(1.0, abs(theirs)), (what, ours, theirs)


VEHICLE = Scenario(
    footprints=[fp("cell", "2.5")],
    boms=[
        bom("module", line("cell", 12), direct=4),
        bom("pack", line("module", 8), direct=30),
        bom("vehicle", line("pack", 1), direct=5000),
    ],
)


@pytest.mark.parametrize(
    ("scores", "rel"), [(bw2data_scores, REL_BW2DATA), (datapackage_scores, REL)]
)
def test_reference_vehicle_against_brightway(brightway: Any, scores: Any, rel: float) -> None:
    theirs = scores(VEHICLE)
    assert theirs["vehicle"] == pytest.approx(5302.0, rel=1e-12)
    for pid, result in run_batch(*VEHICLE.latest()).items():
        assert result.pcf is not None
        assert_close(result.pcf, theirs[pid], pid, rel)


@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(scenarios(min_tiers=3, max_tiers=8, complete=True, well_conditioned=True))
def test_random_supply_chains_against_bw2data(brightway: Any, scenario: Scenario) -> None:
    scores = bw2data_scores(scenario)
    for pid, result in run_batch(*scenario.latest()).items():
        assert result.pcf is not None, (pid, result.status, result.missing)
        assert_close(result.pcf, scores[pid], pid, REL_BW2DATA)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(scenarios(min_tiers=3, max_tiers=12, complete=True, well_conditioned=True))
def test_random_supply_chains_against_brightway_float64(brightway: Any, scenario: Scenario) -> None:
    check_against_datapackage(scenario)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(scenarios(min_tiers=10, max_tiers=12, complete=True, well_conditioned=True, spine=True))
def test_ten_plus_tier_diamonds_against_brightway_float64(
    brightway: Any, scenario: Scenario
) -> None:
    boms = scenario.latest()[1]
    assert bom_depth(boms) >= 10 and diamonds(boms) >= 8, "the shape this test is about"
    check_against_datapackage(scenario)


def check_against_datapackage(scenario: Scenario) -> None:
    scores = datapackage_scores(scenario)
    results = run_batch(*scenario.latest())
    assert set(results) == set(scores)
    for pid, result in results.items():
        assert result.pcf is not None, (pid, result.status, result.missing)
        assert_close(result.pcf, scores[pid], pid)
