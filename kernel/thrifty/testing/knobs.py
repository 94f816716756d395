"""Conformance suite for hardware knobs: subclass :class:`KnobSuite` in a plugin's tests.

Provide a fixture ``make_knob`` that returns a *factory*: each call builds a fresh knob on the
same (fake) device, as ``thrifty hw restore`` does in a new process after a crash::

    class TestMyKnob(KnobSuite):
        @pytest.fixture
        def make_knob(self, tmp_path):
            tree = build_fake_tree(tmp_path)
            return lambda: MyKnob(sysfs_root=tree)

Run it against a fake device (fake sysfs tree, stand-in driver module): the suite writes every
value it tries. Set ``exact = False`` where the device may legitimately read back another value
than the one written (a real board under a thermal cap).
"""

from __future__ import annotations

import json

import pytest

from ..errors import KnobDomainError
from ..hw import HardwareContext
from ..protocols import Knob


def _json_round_trip(value):
    return json.loads(json.dumps(value))


class KnobSuite:
    exact = True
    """Read-back equals the value written (true for fakes)."""

    @pytest.fixture
    def knob(self, make_knob):
        return make_knob()

    @staticmethod
    def _others(knob) -> list:
        """Up to three domain values that differ from the current one: ends and middle."""
        current = knob.read()
        values = [v for v in knob.domain() if v != current]
        picks = [values[0], values[-1], values[len(values) // 2]] if values else []
        return list(dict.fromkeys(picks))

    def test_follows_protocol(self, knob):
        assert isinstance(knob, Knob)
        assert isinstance(knob.name, str) and knob.name
        assert isinstance(knob.unit, str)

    def test_domain_is_discrete_sorted_and_serialisable(self, knob):
        domain = list(knob.domain())
        assert domain, "a knob needs at least one value"
        assert len(set(domain)) == len(domain), "domain values must be unique"
        assert _json_round_trip(domain) == domain
        if all(isinstance(v, (int, float)) for v in domain):
            assert domain == sorted(domain)
        assert len(self._others(knob)) >= 1, "a test device must offer a value to change to"

    def test_snapshot_is_json(self, knob):
        snap = knob.snapshot()
        assert _json_round_trip(snap) == snap

    def test_apply_returns_the_value_read_back(self, knob):
        for value in self._others(knob):
            back = knob.apply(value)
            assert back == knob.read()
            if self.exact:
                assert back == value

    def test_restore_puts_back_the_snapshot(self, knob):
        before, snap = knob.read(), knob.snapshot()
        for value in self._others(knob):
            knob.apply(value)
        assert knob.read() != before or not self.exact
        knob.restore(snap)
        assert knob.read() == before
        assert knob.snapshot() == snap

    def test_a_fresh_knob_restores_a_saved_snapshot(self, knob, make_knob):
        before, saved = knob.read(), json.dumps(knob.snapshot())
        knob.apply(self._others(knob)[0])
        make_knob().restore(json.loads(saved))
        assert knob.read() == before

    def test_hardware_context_restores_and_checks_the_domain(self, knob, tmp_path):
        recovery = tmp_path / "recovery.json"
        before, value = knob.read(), self._others(knob)[0]
        with HardwareContext(recovery_file=recovery) as hw:
            with pytest.raises(KnobDomainError, match=knob.name):
                hw.apply(knob, "__not-in-any-domain__")
            assert not recovery.exists()
            back = hw.apply(knob, value)
            assert back == knob.read()
            assert json.loads(recovery.read_text())["knobs"][0]["knob"] == knob.name
        assert knob.read() == before
        assert not recovery.exists()
