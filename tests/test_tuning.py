"""Spaces, constraints, the built-in optimizers, software knobs and the Pareto front."""

import math

import numpy as np
import pytest

from thrifty.errors import ConfigError, KnobDomainError
from thrifty.testing.knobs import KnobSuite
from thrifty.testing.optimizers import OptimizerSuite
from thrifty.tuning import Constraint, Space, parse_constraint, pareto_front


class TestGrid(OptimizerSuite):
    optimizer = "grid"


class TestRandom(OptimizerSuite):
    optimizer = "random"


def test_grid_walks_in_product_order(thrifty_registry):
    space = Space({"a": (2, 1), "b": ("x", "y")})
    opt = thrifty_registry.optimizer("grid").build(space, "energy", [], 0)
    seen = []
    for _ in range(4):
        c = opt.ask()
        opt.tell(c, {"energy": 1.0})
        seen.append((c["a"], c["b"]))
    assert seen == [(1, "x"), (1, "y"), (2, "x"), (2, "y")]  # numeric domains are sorted


def test_space_encoding_ranks_ordered_knobs_and_one_hots_categories():
    space = Space({"f": (100, 200, 800), "dtype": ("fp32", "fp16")})
    x = space.encode([(100, "fp16"), (800, "fp32"), (200, "fp16")])
    assert x.tolist() == [[0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.5, 0.0, 1.0]]
    assert space.encoded_dim == 3 and space.size == 6


def test_space_sampling_of_a_huge_space_is_distinct_and_inside():
    space = Space({f"k{i}": tuple(range(10)) for i in range(9)})  # 10^9 configurations
    keys = space.sample_keys(np.random.default_rng(0), 500)
    assert len(set(keys)) == 500
    for k in keys[:20]:
        space.key(space.config(k))
    assert len(space.neighbors(keys[0])) <= 18


def test_bad_spaces_and_slos_say_what_to_fix():
    with pytest.raises(ConfigError, match="empty domain"):
        Space({"a": ()})
    with pytest.raises(ConfigError, match="twice"):
        Space({"a": (1, 1)})
    with pytest.raises(ConfigError, match="metric<=bound"):
        parse_constraint("latency is low")
    assert parse_constraint("latency<=50ms") == Constraint("latency", 0.05)
    assert parse_constraint("latency=0.2") == Constraint("latency", 0.2)
    assert not Constraint("latency", 1.0).holds({"latency": math.nan})


def test_pareto_front():
    pts = [(1.0, 5.0), (2.0, 3.0), (2.5, 4.0), (3.0, 1.0), (0.5, 9.0), (3.0, 2.0)]
    assert pareto_front(pts) == [4, 0, 1, 3]


@pytest.fixture(params=["batch-size", "threads", "dtype", "draft", "lookahead"])
def software_knob_name(request):
    return request.param


class TestSoftwareKnobs(KnobSuite):
    @pytest.fixture
    def make_knob(self, software_knob_name, thrifty_registry):
        from thrifty.tuning import knobs

        knobs._STATE.pop(software_knob_name, None)
        return lambda: thrifty_registry.hardware_knob(software_knob_name).build()


def test_software_knobs_record_values_and_restore(thrifty_registry):
    from thrifty.tuning.knobs import current

    knob = thrifty_registry.hardware_knob("batch-size").build(values="1,4,16")
    assert knob.domain() == (1, 4, 16) and knob.read() in (1, 4, 16)
    knob.apply(1)
    state = knob.snapshot()
    assert knob.apply(16) == 16 and knob.read() == 16 and current("batch-size") == 16
    with pytest.raises(KnobDomainError, match="domain"):
        knob.apply(3)
    knob.restore(state)
    assert knob.read() == 1
    draft = thrifty_registry.hardware_knob("draft").build(values=["none", "smollm2-draft-l2"])
    assert draft.apply("smollm2-draft-l2") == "smollm2-draft-l2"
    for name in ("threads", "dtype", "lookahead"):
        k = thrifty_registry.hardware_knob(name).build()
        assert k.read() in k.domain() and k.apply(k.domain()[-1]) == k.domain()[-1]


def test_draft_knob_domain_comes_from_registered_drafts(register_plugin):
    from thrifty import DraftModelSpec, hookimpl

    class Acme:
        @hookimpl
        def thrifty_draft_models(self):
            return [DraftModelSpec(name="acme-draft", factory=lambda verifier: None)]

    reg = register_plugin(Acme(), name="acme", entry_points=True)
    knob = reg.hardware_knob("draft").build()
    assert knob.domain() == ("none", *reg.names("draft_models"))
    assert "acme-draft" in knob.domain() and knob.apply("acme-draft") == "acme-draft"
