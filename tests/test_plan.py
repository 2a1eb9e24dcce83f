from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from ci_swarm.agents import OPTION_VALIDATORS
from ci_swarm.agents.edits import parse_edits
from ci_swarm.dag import concurrent_pairs, critical_path, waves
from ci_swarm.errors import PathEscapeError, PlanError
from ci_swarm.models import AgentSpec, MergeOrder, MergePolicy, OnConflict, Plan
from ci_swarm.paths import check_edit_path, globs_may_overlap, ownership_overlaps, serialize_overlaps
from ci_swarm.plan import load_plan, plan_from_dict, plan_to_dict, validate

PLANS = Path(__file__).parent / "data" / "plans"


def plan(*subtasks: dict[str, Any], **top: Any) -> Plan:
    return plan_from_dict({"version": 1, "task": "t", "subtasks": list(subtasks), **top})


def error_of(data: dict[str, Any], **kw: Any) -> str:
    with pytest.raises(PlanError) as info:
        validate(plan_from_dict(data), **kw)
    return str(info.value)


def sub(sid: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "title": sid.upper(), "depends_on": list(deps), **extra}


# --- loading ----------------------------------------------------------------------------------


def test_load_yaml_plan_builds_frozen_values() -> None:
    p = load_plan(PLANS / "greeting.yml")
    assert [s.id for s in p.subtasks] == ["code", "tests", "docs", "changelog"]
    assert p.merge.order is MergeOrder.COMPLETION
    assert p.merge.prefer == ()
    code = p.subtask("code")
    assert code.role == "builder"
    assert code.paths == ("src/greet.py",)
    assert code.agent is not None
    assert code.agent.kind == "scripted"
    assert isinstance(code.agent.options, MappingProxyType)
    assert code.agent.options["delay"] == 0.05
    edits = code.agent.options["edits"]
    assert isinstance(edits, tuple)
    assert isinstance(edits[0], MappingProxyType)
    with pytest.raises(TypeError):
        code.agent.options["delay"] = 1  # type: ignore[index]
    assert p.subtask("tests").depends_on == ("code",)
    cmd = p.subtask("changelog").agent
    assert cmd is not None
    assert cmd.kind == "command"
    assert cmd.options["run"] == ("python", "-c", "print('{title}')")


def test_load_json_plan() -> None:
    p = load_plan(PLANS / "greeting.json")
    assert p.merge.order is MergeOrder.PLAN
    assert p.merge.prefer == ("tester", "builder")
    assert p.merge.prefer_label == "tester > builder"
    assert p.subtask("tests").depends_on == ("code",)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as info:
        load_plan(PLANS / "bad-yaml.yml")
    assert "bad-yaml.yml:7:1: malformed YAML: found unexpected end of stream" in str(info.value)
    assert "while scanning a quoted scalar at line 5" in str(info.value)
    bad = tmp_path / "plan.yaml"
    bad.write_text("version: 1\nsubtasks:\n  - id: a\n    title: x: y\n")
    with pytest.raises(PlanError, match=r"plan\.yaml:4:\d+: malformed YAML: mapping values are not allowed"):
        load_plan(bad)


def test_malformed_json_names_line() -> None:
    with pytest.raises(PlanError, match=r"bad-json\.json:3:\d+: malformed JSON"):
        load_plan(PLANS / "bad-json.json")


def test_cycle_file_prints_cycle() -> None:
    with pytest.raises(PlanError, match=r"cycle\.yml: dependency cycle: a -> c -> b -> a"):
        load_plan(PLANS / "cycle.yml")


def test_escape_file_refused_at_load() -> None:
    with pytest.raises(PlanError, match=r"subtask 'sneaky': edit #1: path '\.\./outside\.txt' leaves"):
        load_plan(PLANS / "escape.yml", validators=OPTION_VALIDATORS)


def test_empty_file_refused() -> None:
    with pytest.raises(PlanError, match="no subtasks"):
        load_plan(PLANS / "empty.yml")


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="cannot read plan"):
        load_plan(tmp_path / "missing.yml")
    listing = tmp_path / "list.yml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(PlanError, match="must be a mapping with 'subtasks', got a list"):
        load_plan(listing)


# --- structural errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"version": 2, "subtasks": [sub("a")]}, "unsupported plan version 2"),
        ({"version": 1}, "the plan has no subtasks"),
        ({"subtasks": {"a": 1}}, "'subtasks' must be a list, got a mapping"),
        ({"subtasks": ["a"]}, "subtask #1 must be a mapping, got a string"),
        ({"subtasks": [{"title": "x"}]}, "subtask #1 has no 'id'"),
        ({"subtasks": [sub("a", title=3)]}, "subtask 'a': 'title' must be a string, got int"),
        ({"subtasks": [sub("a", paths=[1])]}, "subtask 'a': 'paths' must be a list of strings"),
        ({"subtasks": [sub("a", depends_on=7)]}, "subtask 'a': 'depends_on' must be a list of strings"),
        ({"subtasks": [sub("a", dependson=["b"])]}, "subtask 'a': unknown key 'dependson'"),
        ({"subtasks": [sub("a")], "extra": 1}, "unknown key 'extra'"),
        ({"subtasks": [sub("a", agent=[1])]}, "subtask 'a': 'agent' must be a mapping, got a list"),
        ({"subtasks": [sub("a", agent={"kind": 5})]}, "'agent.kind' must be a string"),
        (
            {"subtasks": [sub("a")], "merge": {"order": "random"}},
            "merge.order must be 'completion' or 'plan'",
        ),
        ({"subtasks": [sub("a")], "merge": {"prefer": "last"}}, 'merge.prefer must be "first" or a'),
        ({"subtasks": [sub("a")], "merge": {"prefer": []}}, 'merge.prefer must be "first" or a'),
        ({"subtasks": [sub("a")], "merge": {"prefer": [1]}}, 'merge.prefer must be "first" or a'),
        ({"subtasks": [sub("a")], "merge": {"wins": "x"}}, "merge: unknown key 'wins'"),
        ({"subtasks": [sub("a")], "merge": "first"}, "'merge' must be a mapping, got a string"),
    ],
)
def test_structural_errors_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(PlanError) as info:
        plan_from_dict(data, source="p.yml")
    assert message in str(info.value)
    assert str(info.value).startswith("p.yml")


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        ({"delay": -1}, "'agent.delay' must be a non-negative number"),
        ({"delay": "soon"}, "'agent.delay' must be a non-negative number"),
        ({"edits": "write x"}, "'agent.edits' must be a list"),
        ({"edits": [{"write": "a", "replace": "b"}]}, "edit #1 needs exactly one of write, replace"),
        ({"edits": [{"write": "a"}]}, "edit #1 (write a) needs 'content'"),
        ({"edits": [{"replace": "a", "old": "x"}]}, "edit #1 (replace a) needs 'new'"),
        ({"edits": [{"replace": "a", "old": "", "new": "y"}]}, "has an empty 'old'"),
        ({"edits": [{"delete": "a", "content": "x"}]}, "edit #1 (delete a) has unknown key 'content'"),
        ({"edits": [{"append": 3, "text": "x"}]}, "'append' must be a path string"),
        ({"fail": 3}, "'agent.fail' must be a string"),
        ({"kind": "command"}, "command agent needs 'run'"),
        ({"kind": "command", "run": "ls -l"}, "command agent needs 'run'"),
        ({"kind": "command", "run": ["ls", 3]}, "'run' must contain only strings"),
        ({"kind": "command", "run": ["ls"], "timeout": 0 - 5}, "'agent.timeout' must be a non-negative"),
        ({"kind": "command", "run": ["ls"], "env": {"MY_TOKEN": "x"}}, "may not pass secrets"),
        ({"kind": "command", "run": ["ls"], "env": {"A": 1}}, "'env' must map names to strings"),
    ],
)
def test_agent_option_errors(agent: dict[str, Any], message: str) -> None:
    with pytest.raises(PlanError) as info:
        plan_from_dict({"subtasks": [sub("a", agent=agent)]}, validators=OPTION_VALIDATORS)
    assert "subtask 'a'" in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../x", "leaves the worktree"),
        ("a/../../x", "leaves the worktree"),
        ("/etc/passwd", "absolute path"),
        (".git/config", "under .git/"),
        ("sub/.git/hooks/pre-commit", "under .git/"),
        (".", "names the worktree itself"),
    ],
)
def test_scripted_edit_paths_refused_at_load(path: str, message: str) -> None:
    agent = {"kind": "scripted", "edits": [{"write": path, "content": "x"}]}
    with pytest.raises(PlanError, match="edit #1") as info:
        plan_from_dict({"subtasks": [sub("a", agent=agent)]}, validators=OPTION_VALIDATORS)
    assert message in str(info.value)
    with pytest.raises(PathEscapeError):
        check_edit_path(path)


def test_edit_paths_inside_are_fine() -> None:
    check_edit_path("src/a/../b.py")
    edits = parse_edits(
        [
            {"write": "a.txt", "content": "1"},
            {"append": "b", "text": "2"},
            {"replace": "c", "old": "x", "new": ""},
        ]
    )
    assert [(e.op, e.path, e.content, e.old, e.new) for e in edits] == [
        ("write", "a.txt", "1", "", ""),
        ("append", "b", "2", "", ""),
        ("replace", "c", "", "x", ""),
    ]


def test_defaults_and_shorthands() -> None:
    p = plan({"id": "a", "depends_on": "b", "paths": "src"}, {"id": "b", "agent": "command-less"})
    a, b = p.subtasks
    assert (a.role, a.title, a.instructions) == ("builder", "a", "")
    assert a.depends_on == ("b",)
    assert a.paths == ("src",)
    assert b.agent is not None
    assert b.agent.kind == "command-less"
    assert p.version == 1


# --- graph errors -----------------------------------------------------------------------------


def test_duplicate_ids() -> None:
    assert error_of({"subtasks": [sub("a"), sub("b"), sub("a")]}) == (
        "duplicate subtask id 'a' (subtasks #1 and #3)"
    )


@pytest.mark.parametrize("bad", ["A", "-a", "a_b", "a b", "é"])
def test_malformed_ids(bad: str) -> None:
    assert f"malformed subtask id {bad!r}" in error_of({"subtasks": [sub(bad)]})


def test_unknown_dependency() -> None:
    assert error_of({"subtasks": [sub("a"), sub("b", "x")]}) == "subtask 'b' depends on unknown 'x'"


def test_self_dependency() -> None:
    assert error_of({"subtasks": [sub("a", "a")]}) == "subtask 'a' depends on itself"


def test_cycle_is_printed() -> None:
    assert error_of({"subtasks": [sub("a", "b"), sub("b", "a")]}) == "dependency cycle: a -> b -> a"
    assert error_of({"subtasks": [sub("x"), sub("a", "x", "c"), sub("b", "a"), sub("c", "b")]}) == (
        "dependency cycle: a -> c -> b -> a"
    )


def test_too_many_subtasks() -> None:
    data = {"subtasks": [sub(f"s{i}") for i in range(5)]}
    assert error_of(data, max_subtasks=4) == "too many subtasks: 5 (the limit is 4)"
    assert validate(plan_from_dict(data), max_subtasks=5) == ()


def test_validate_rechecks_programmatic_plans() -> None:
    p = plan(sub("a"))
    assert validate(p) == ()
    with pytest.raises(PlanError, match="no subtasks"):
        validate(Plan("t", ()))


# --- ordering ---------------------------------------------------------------------------------


def diamond() -> Plan:
    return plan(sub("a"), sub("b", "a"), sub("c", "a"), sub("d", "b", "c"), sub("e"))


def test_waves() -> None:
    assert waves(diamond()) == (("a", "e"), ("b", "c"), ("d",))
    assert waves(plan(sub("z", "y"), sub("y"))) == (("y",), ("z",))


def test_critical_path() -> None:
    path, length = critical_path(diamond(), {"a": 1, "b": 5, "c": 2, "d": 1, "e": 6})
    assert path == ("a", "b", "d")
    assert length == 7
    path, length = critical_path(diamond(), {"e": 9})
    assert (path, length) == (("e",), 9)


def test_concurrent_pairs() -> None:
    pairs = concurrent_pairs(diamond())
    assert pairs == {frozenset(p) for p in [("b", "c"), ("a", "e"), ("b", "e"), ("c", "e"), ("d", "e")]}
    assert frozenset(("a", "d")) not in pairs  # d depends on a transitively


# --- ownership overlap ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("src/greet.py", "src/greet.py", True),
        ("src/*.py", "src/greet.py", True),
        ("src/**", "src/deep/er/x.py", True),
        ("src", "src/a.py", True),
        ("**/*.md", "docs/x/README.md", True),
        ("src/*.py", "src/*_test.py", True),
        ("docs/*.md", "src/*.py", False),
        ("src/*.py", "src/a/b.py", False),
        ("a/*/c", "a/b/d", False),
        ("src/a.py", "src/b.py", False),
        ("lib/*.py", "lib/*.js", False),
    ],
)
def test_globs_may_overlap(a: str, b: str, overlap: bool) -> None:
    assert globs_may_overlap(a, b) is overlap
    assert globs_may_overlap(b, a) is overlap


def test_ownership_overlap_is_a_warning_naming_both_and_paths() -> None:
    p = plan(
        sub("code", paths=["src/greet.py"]),
        sub("docs", paths=["README.md", "src/*.py"]),
        sub("tests", "code", paths=["src/greet.py"]),  # after code: not concurrent with it
    )
    assert ownership_overlaps(p) == (
        ("code", "docs", ("src/greet.py ~ src/*.py",)),
        ("docs", "tests", ("src/*.py ~ src/greet.py",)),
    )
    warnings = validate(p)
    assert len(warnings) == 2
    assert "'code' and 'docs'" in warnings[0]
    assert "src/greet.py ~ src/*.py" in warnings[0]


def test_serialize_overlaps_adds_edges_in_plan_order() -> None:
    p = plan(
        sub("a", paths=["x.txt"]),
        sub("b", paths=["x.txt"]),
        sub("c", paths=["x.txt"]),
        sub("d", paths=["y.txt"]),
    )
    s = serialize_overlaps(p)
    assert [t.depends_on for t in s.subtasks] == [(), ("a",), ("b",), ()]
    assert ownership_overlaps(s) == ()
    assert validate(s) == ()
    assert waves(s) == (("a", "d"), ("b",), ("c",))


def test_serialize_overlaps_never_creates_a_cycle() -> None:
    # p waits for r; q overlaps p and r. Adding q -> p then r -> q would close r -> q -> p -> r.
    p = plan(
        sub("p", "r", paths=["f"]),
        sub("q", paths=["f"]),
        sub("r", paths=["f"]),
    )
    s = serialize_overlaps(p)
    assert validate(s) == ()
    assert ownership_overlaps(s) == ()
    assert s.subtask("q").depends_on == ("p",)
    assert s.subtask("r").depends_on == ()


# --- backends validate their own options ------------------------------------------------------


def test_the_core_knows_no_option_names() -> None:
    """Without validators, plan.py checks the agent's shape but none of a backend's options."""
    odd = {"kind": "scripted", "delay": -1, "edits": "nonsense", "anything": 1}
    p = plan_from_dict({"subtasks": [sub("a", agent=odd)]})
    assert p.subtask("a").agent is not None
    assert validate(p) == ()
    with pytest.raises(PlanError, match="subtask 'a': agent kind 'scripted': unknown option 'anything'"):
        validate(p, validators=OPTION_VALIDATORS)


def test_validators_are_looked_up_by_kind() -> None:
    seen: list[tuple[dict[str, Any], str]] = []

    def check(options: Any, where: str) -> None:
        seen.append((dict(options), where))
        if options.get("speed") != "fast":
            raise PlanError(f"{where}: 'agent.speed' must be fast")

    validators = {"mine": check}
    ok = {"subtasks": [sub("a", agent={"kind": "mine", "speed": "fast"}), sub("b")]}
    plan_from_dict(ok, source="p.yml", validators=validators)
    assert seen == [({"speed": "fast"}, "p.yml: subtask 'a'")]
    with pytest.raises(PlanError, match=r"p\.yml: subtask 'a': 'agent\.speed' must be fast"):
        plan_from_dict(
            {"subtasks": [sub("a", agent={"kind": "mine"})]}, source="p.yml", validators=validators
        )


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        ({"dealy": 1}, "agent kind 'scripted': unknown option 'dealy' (did you mean 'delay'?)"),
        (
            {"kind": "command", "run": ["ls"], "timout": 3},
            "unknown option 'timout' (did you mean 'timeout'?)",
        ),
        ({"kind": "command", "run": ["ls"], "zzz": 3}, "unknown option 'zzz' (allowed: command, env, "),
        ({"kind": "claude", "max_turn": 3}, "unknown option 'max_turn' (did you mean 'max_turns'?)"),
        ({"kind": "claude", "max_turns": 0}, "'agent.max_turns' must be a whole number above 0"),
        ({"kind": "claude", "model": 4}, "'agent.model' must be a string"),
        ({"crash": "yes"}, "'agent.crash' must be true or false"),
    ],
)
def test_unknown_and_bad_options_are_named(agent: dict[str, Any], message: str) -> None:
    with pytest.raises(PlanError) as info:
        plan_from_dict({"subtasks": [sub("a", agent=agent)]}, source="p.yml", validators=OPTION_VALIDATORS)
    assert str(info.value).startswith("p.yml: subtask 'a'")
    assert message in str(info.value)


def test_unknown_dependency_and_key_suggest_the_closest() -> None:
    message = error_of({"subtasks": [sub("code"), sub("tests", "cod")]})
    assert message == "subtask 'tests' depends on unknown 'cod' (did you mean 'code'?)"
    with pytest.raises(PlanError, match=r"unknown key 'dependson' \(did you mean 'depends_on'\?\)"):
        plan_from_dict({"subtasks": [sub("a", dependson=["b"])]})


# --- merge.on_conflict and merge.resolver (issue #12) ----------------------------------------------


def test_on_conflict_and_resolver_are_read_like_a_subtasks_agent() -> None:
    merge = {"on_conflict": "resolve", "resolver": {"kind": "command", "run": ["true", "{instructions}"]}}
    plan = plan_from_dict({"subtasks": [sub("a")], "merge": merge}, validators=OPTION_VALIDATORS)
    assert plan.merge.on_conflict is OnConflict.RESOLVE
    assert plan.merge.resolver == AgentSpec("command", MappingProxyType({"run": ("true", "{instructions}")}))
    short = plan_from_dict({"subtasks": [sub("a")], "merge": {"on_conflict": "redo", "resolver": "claude"}})
    assert (short.merge.on_conflict, short.merge.resolver) == (OnConflict.REDO, AgentSpec("claude"))
    assert plan_from_dict({"subtasks": [sub("a")]}).merge.on_conflict is OnConflict.KEEP  # the default


@pytest.mark.parametrize(
    ("merge", "message"),
    [
        (
            {"on_conflict": "redu"},
            "p.yml: merge.on_conflict must be 'keep', 'redo' or 'resolve', got 'redu' (did you mean 'redo'?)",
        ),
        ({"on_conflict": 3}, "p.yml: merge.on_conflict must be 'keep', 'redo' or 'resolve', got 3"),
        (
            {"on_conflit": "redo"},
            "p.yml: merge: unknown key 'on_conflit' (did you mean 'on_conflict'?) "
            "(allowed: insertions, on_conflict, order, prefer, resolver)",
        ),
        (
            {"resolver": "clod"},
            "p.yml: merge.resolver: unknown agent kind 'clod' (did you mean 'claude'?) "
            "(available: claude, command, scripted)",
        ),
        (
            {"resolver": {"kind": "robot"}},
            "p.yml: merge.resolver: unknown agent kind 'robot' (available: claude, command, scripted)",
        ),
        (
            {"resolver": ["claude"]},
            "p.yml: merge.resolver must be an agent kind or a mapping with 'kind', got a list",
        ),
        (
            {"resolver": {"kind": "command", "runn": ["x"]}},
            "p.yml: merge.resolver: agent kind 'command': unknown option 'runn' (did you mean 'run'?) "
            "(allowed: command, env, pass_env, run, success, timeout)",
        ),
        (
            {"resolver": {"kind": "claude", "max_turns": 0}},
            "p.yml: merge.resolver: 'agent.max_turns' must be",
        ),
    ],
)
def test_bad_on_conflict_and_resolver_are_named_on_one_line(merge: dict[str, Any], message: str) -> None:
    with pytest.raises(PlanError) as info:
        plan_from_dict({"subtasks": [sub("a")], "merge": merge}, source="p.yml", validators=OPTION_VALIDATORS)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_validate_checks_the_resolvers_options_with_the_validators_given() -> None:
    policy = MergePolicy(on_conflict=OnConflict.RESOLVE, resolver=AgentSpec("scripted", {"dealy": 1}))
    plan = Plan("t", plan_from_dict({"subtasks": [sub("a")]}).subtasks, merge=policy)
    with pytest.raises(PlanError, match=r"^merge\.resolver: agent kind 'scripted': unknown option 'dealy'"):
        validate(plan, validators=OPTION_VALIDATORS)
    assert validate(plan) == ()  # without validators the options are not checked here


def test_a_plan_file_without_merge_gets_the_default_merge_and_one_with_merge_keeps_its_own(
    tmp_path: Path,
) -> None:
    config = MergePolicy(on_conflict=OnConflict.REDO, resolver=AgentSpec("claude"))
    bare = tmp_path / "bare.yml"
    bare.write_text("subtasks: [{id: a}]\n")
    own = tmp_path / "own.yml"
    own.write_text("subtasks: [{id: a}]\nmerge: {order: plan}\n")
    assert load_plan(bare, default_merge=config).merge == config
    assert load_plan(bare).merge == MergePolicy()
    assert load_plan(own, default_merge=config).merge == MergePolicy(
        order=MergeOrder.PLAN
    )  # the whole section


def test_plan_to_dict_carries_on_conflict_and_the_resolver_back() -> None:
    merge = {"on_conflict": "resolve", "resolver": {"kind": "command", "run": ["true"], "timeout": 60}}
    plan = plan_from_dict({"subtasks": [sub("a")], "merge": merge}, validators=OPTION_VALIDATORS)
    data = plan_to_dict(plan)
    assert data["merge"]["on_conflict"] == "resolve"
    assert data["merge"]["resolver"] == {"kind": "command", "run": ["true"], "timeout": 60}
    assert plan_from_dict(data, validators=OPTION_VALIDATORS) == plan
    kept = plan_from_dict({"subtasks": [sub("a")]})
    assert "resolver" not in plan_to_dict(kept)["merge"] and plan_from_dict(plan_to_dict(kept)) == kept
