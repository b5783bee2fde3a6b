"""CommittedInputs: the input rows the runs projection committed lately, by run."""

from __future__ import annotations

from application.projections.committed_inputs import CommittedInputs


def row(run_id: str, input_id: str, admitted_at: int | None = 1, decided_at: int | None = None) -> tuple:
    return (run_id, input_id, admitted_at, decided_at, None)


def test_a_run_seen_opened_is_complete_an_input_it_does_not_hold_has_no_row() -> None:
    inputs = CommittedInputs()
    inputs.committed(["run-a"], [[row("run-a", "x")]], [])
    assert inputs.lookup("run-a", ["x", "y"]) == ({"x": row("run-a", "x")}, [])


def test_a_run_not_seen_opened_sends_the_inputs_it_does_not_hold_to_the_database() -> None:
    inputs = CommittedInputs()
    inputs.committed([], [[row("run-a", "x")]], [])
    assert inputs.lookup("run-a", ["x", "y"]) == ({"x": row("run-a", "x")}, ["y"])
    assert inputs.lookup("run-b", ["z"]) == ({}, ["z"])


def test_a_later_row_replaces_the_one_before_and_counts_once() -> None:
    inputs = CommittedInputs()
    inputs.committed(["run-a"], [[row("run-a", "x")], [row("run-a", "x", decided_at=7)]], [])
    assert inputs.lookup("run-a", ["x"]) == ({"x": row("run-a", "x", decided_at=7)}, [])
    assert len(inputs) == 1


def test_a_closed_run_is_forgotten_and_is_read_again_if_reopened() -> None:
    inputs = CommittedInputs()
    inputs.committed(["run-a"], [[row("run-a", "x")]], ["run-a"])
    assert inputs.lookup("run-a", ["x"]) == ({}, ["x"])
    assert len(inputs) == 0


def test_over_the_bound_the_least_recently_used_runs_go_first_whole() -> None:
    inputs = CommittedInputs(max_rows=3)
    inputs.committed(["run-a", "run-b"], [[row("run-a", "x"), row("run-b", "x"), row("run-b", "y")]], [])
    inputs.lookup("run-a", ["x"])  # run-a is used after run-b
    inputs.committed([], [[row("run-a", "y")]], [])
    # 4 rows: run-b, used least lately, is dropped whole; its inputs are read again.
    assert len(inputs) == 2
    assert inputs.lookup("run-b", ["x", "y"]) == ({}, ["x", "y"])
    assert inputs.lookup("run-a", ["x", "y", "z"]) == (
        {"x": row("run-a", "x"), "y": row("run-a", "y")},
        [],
    )


def test_a_run_bigger_than_the_bound_is_not_kept_and_loses_its_completeness() -> None:
    inputs = CommittedInputs(max_rows=2)
    inputs.committed(["run-a"], [[row("run-a", name) for name in "xyz"]], [])
    assert len(inputs) == 0
    assert inputs.lookup("run-a", ["x", "w"]) == ({}, ["x", "w"])
