"""A run's open inputs, as the runs projection keeps them between pages: each input's
other half is recognised whichever comes first, and a run whose inputs are all matched
gives its memory back."""

from __future__ import annotations

import sys

from application.projections.run_inputs import OpenInputs


def test_each_half_finds_the_other_whichever_comes_first() -> None:
    inputs = OpenInputs()
    assert inputs.admit("a") is False  # admitted first: missing until decided
    assert inputs.decide("b") is False  # decided first: unexpected until admitted
    assert (inputs.undecided, inputs.unadmitted) == ({"a"}, {"b"})
    assert inputs.decide("a") is True
    assert inputs.admit("b") is True
    assert inputs.size() == 0


def test_a_run_with_every_input_matched_holds_next_to_nothing() -> None:
    inputs = OpenInputs()
    ids = [f"input-{number:05d}" for number in range(10_000)]
    for input_id in ids:
        inputs.admit(input_id)
    inputs.compact()
    assert sys.getsizeof(inputs.undecided) > 100_000
    for input_id in ids[:9_000]:
        inputs.decide(input_id)
    inputs.compact()
    assert len(inputs.undecided) == 1_000
    assert sys.getsizeof(inputs.undecided) < 100_000
    for input_id in ids[9_000:]:
        inputs.decide(input_id)
    inputs.compact()
    assert sys.getsizeof(inputs.undecided) == sys.getsizeof(set())
