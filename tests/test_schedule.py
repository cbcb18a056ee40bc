import itertools

import pytest

from tracker.schedule import Schedule


def test_every_includes_zero_and_the_last_step():
    assert Schedule.parse(4).resolve(10) == [0, 4, 8, 10]
    assert Schedule.parse("every:5").resolve(10) == [0, 5, 10]


def test_explicit_steps_are_sorted_deduplicated_and_clipped():
    assert Schedule.parse([7, 3, 3, 50]).resolve(20) == [0, 3, 7, 20]


def test_log_spreads_n_distinct_steps_geometrically():
    steps = Schedule.parse("log:20").resolve(3000)
    assert steps[0] == 0 and steps[-1] == 3000 and len(steps) == 21
    assert steps == sorted(set(steps))
    gaps = [b - a for a, b in itertools.pairwise(steps[1:])]
    assert gaps[-1] > 10 * gaps[5], "late steps must be much further apart than early ones"
    assert Schedule.parse("log:10").resolve(6) == [0, 1, 2, 3, 4, 5, 6]


def test_every_with_an_unknown_run_length_decides_step_by_step():
    schedule = Schedule.parse("every:5")
    resolved = schedule.resolve(None)
    assert resolved == [0]
    assert [s for s in range(16) if schedule.due(s, resolved)] == [0, 5, 10, 15]
    with pytest.raises(ValueError, match="'log:N' needs a known run length"):
        Schedule.parse("log:5").resolve(None)


@pytest.mark.parametrize("spec", ["log:0", "every:x", "sqrt:4", 0, [], [-1, 3], True])
def test_bad_specs_are_refused(spec):
    with pytest.raises(ValueError, match="schedule"):
        Schedule.parse(spec)
