"""The dataclass codec: a report's records (nested dataclasses, enums, optional values, fixed tuples)
survive JSON and come back equal; missing fields take defaults; data that does not fit names its field."""

from __future__ import annotations

import json

import pytest

from ci_swarm.codec import from_data, to_data
from ci_swarm.models import (
    CheckResult,
    Conflict,
    ConflictKind,
    Diffstat,
    MergeRecord,
    MergeStatus,
    Repair,
    Resolved,
    SubtaskRecord,
    SubtaskStatus,
    Usage,
)


def test_records_round_trip_through_json() -> None:
    conflict = Conflict("a.txt", ConflictKind.CONTENT, "b", "a", (2, 3), "A\n", "B\n", "x\n", "why")
    repair = Repair(Resolved.REFUSED, "command (redo of b)", reason="markers", usage=Usage(turns=2))
    merge = MergeRecord("b", 2, MergeStatus.CONFLICTED, "c" * 40, ("a.txt",), (conflict,), 0.5, 1, repair)
    check = CheckResult("tests", False, None, 1.0, timed_out=True)
    record = SubtaskRecord(
        "b",
        "tester",
        "B",
        SubtaskStatus.FAILED,
        exit_status=None,
        started_at=None,
        checks=(check,),
        usage=Usage(input_tokens=7, cost_usd=0.25),
        diffstat=Diffstat(1, 2, 3),
        files=("a.txt",),
    )
    for value in (merge, record):
        assert from_data(type(value), json.loads(json.dumps(to_data(value)))) == value


def test_missing_fields_take_their_defaults() -> None:
    assert from_data(Usage, {"turns": 3}) == Usage(turns=3)


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"subtask": "a", "order": "1", "status": "clean"}, "MergeRecord.order: expected int, got str"),
        ({"subtask": "a", "order": 1, "status": "odd"}, "MergeRecord.status: 'odd' is not a MergeStatus"),
        ({"subtask": "a", "order": 1}, "MergeRecord: "),
        (
            {"subtask": "a", "order": 1, "status": "clean", "conflicts": {}},
            "MergeRecord.conflicts is not a list",
        ),
    ],
)
def test_data_that_does_not_fit_names_its_field(data: dict[str, object], where: str) -> None:
    with pytest.raises(ValueError, match="^" + where.replace("(", r"\(").replace(".", r"\.")):
        from_data(MergeRecord, data)
