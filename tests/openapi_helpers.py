"""Check a fake GitHub's recorded traffic against GitHub's OpenAPI description (the committed slice), for
fixtures that want every exchange of a test validated at teardown."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from openapi_core import OpenAPI

from ci_swarm.testing.fake_github import Exchange
from tests.act_helpers import World, make_world
from tests.test_github_openapi import SLICE, _operation, _why, validate


@functools.cache
def slice_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(SLICE.read_text())
    return spec


@functools.cache
def slice_api() -> OpenAPI:
    return OpenAPI.from_dict(slice_spec())


def traffic_problems(traffic: Iterable[Exchange], *, allow_422: bool = False) -> list[str]:
    """One line per exchange that is not in the slice, does not match GitHub's description, or was a 422
    (GitHub refused what we sent) unless ``allow_422``. Injected faults are not GitHub's and are skipped."""
    problems = []
    for x in traffic:
        if x.injected:
            continue
        op = _operation(slice_spec(), x)
        if op is None:
            problems.append(f"{x.method} {x.path} {x.status}: not in the OpenAPI slice")
            continue
        if x.status == 422 and not allow_422:
            problems.append(f"{op} {x.method} {x.path}: 422 {x.response_body[:300].decode(errors='replace')}")
        try:
            validate(slice_api(), x)
        except Exception as exc:  # openapi-core raises several unrelated types; collect them all
            problems.append(f"{op} {x.method} {x.path} {x.status}: {_why(exc)}")
    return problems


def checked_worlds(tmp_path: Path) -> Iterator[World]:
    """The Action tests' world (:func:`tests.act_helpers.make_world`), every exchange with the fake GitHub
    checked against the description at teardown (no 422 allowed)."""
    for each in make_world(tmp_path):
        yield each
        problems = traffic_problems(each.fake.traffic, allow_422=False)
        assert not problems, "GitHub traffic off the description:\n" + "\n".join(problems)
