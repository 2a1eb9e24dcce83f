"""A small GitHub world for the action tests: the fake GitHub serving a real repository, a runner-like
checkout, webhook payloads shaped like GitHub's (from tests/data/events, @octokit/webhooks-examples), the
environment the runner gives a step, and ``act`` in host mode for the end-to-end tests."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import github
import pytest
import yaml

from ci_swarm import git
from ci_swarm.testing.fake_github import FakeGitHub
from tests.fixtures import commit, make_repo
from tests.fixtures.env import sealed_subset

ROOT = Path(__file__).resolve().parents[1]
EVENTS = Path(__file__).parent / "data" / "events"
ACT_WORKFLOWS = Path(__file__).parent / "data" / "act"
ACT = Path(sys.executable).parent / "act"
TOKEN = "ghs_ActionT3stTokenNeverPrinted7"
REPO = "octo/demo"
MAINTAINER = "maintainer"
FILES = {
    "README.md": "# demo\n\nA demo project.\n\n## Usage\n\nRun it.\n",
    "src/app.py": "".join(f"line {i}\n" for i in range(1, 21)),
}


def load_event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


def swarm_plan(*subtasks: Mapping[str, Any], task: str = "demo work") -> str:
    """A ```swarm-plan block for an issue body or a comment."""
    text = yaml.safe_dump({"version": 1, "task": task, "subtasks": list(subtasks)}, sort_keys=False)
    return f"```swarm-plan\n{text}```\n"


def write_sub(
    sub_id: str, path: str, content: str, *, role: str = "builder", delay: float = 0.0
) -> dict[str, Any]:
    return {
        "id": sub_id,
        "role": role,
        "title": f"write {path}",
        "paths": [path],
        "agent": {"kind": "scripted", "delay": delay, "edits": [{"write": path, "content": content}]},
    }


def replace_sub(sub_id: str, path: str, old: str, new: str, *, role: str = "builder") -> dict[str, Any]:
    return {
        "id": sub_id,
        "role": role,
        "title": f"edit {path}",
        "paths": [path],
        "agent": {"kind": "scripted", "edits": [{"replace": path, "old": old, "new": new}]},
    }


@dataclass
class World:
    """The fake GitHub serving ``octo/demo`` (from ``source``) and a runner's checkout (``workspace``)."""

    fake: FakeGitHub
    source: Path
    workspace: Path
    tmp: Path
    token: str = TOKEN
    name: str = REPO
    outputs: Path = field(init=False)
    summary: Path = field(init=False)

    def __post_init__(self) -> None:
        self.outputs = self.tmp / "github_output"
        self.summary = self.tmp / "step_summary"
        self.outputs.touch()
        self.summary.touch()

    # --- reading the fake back, through the API ---

    def gh(self) -> github.Github:
        return github.Github(
            auth=github.Auth.Token(self.token),
            base_url=self.fake.base_url,
            retry=None,
            seconds_between_requests=None,
            seconds_between_writes=None,
        )

    def repo(self) -> Any:
        return self.gh().get_repo(self.name)

    @property
    def bare(self) -> Path:
        return self.fake.repo(self.name).path

    def remote_branches(self) -> set[str]:
        return {b.name for b in self.repo().get_branches()}

    def writes(self) -> list[str]:
        """Every non-GET API call the fake received, as ``METHOD path``."""
        return [f"{x.method} {x.path}" for x in self.fake.traffic if x.method != "GET"]

    def read_outputs(self) -> dict[str, str]:
        """``$GITHUB_OUTPUT`` parsed the way the runner parses it (``name<<DELIM`` blocks)."""
        values: dict[str, str] = {}
        lines = iter(self.outputs.read_text().splitlines())
        for line in lines:
            name, _, delimiter = line.partition("<<")
            body = []
            for inner in lines:
                if inner == delimiter:
                    break
                body.append(inner)
            values[name] = "\n".join(body)
        return values

    # --- making things happen on the fake ---

    def issue(self, title: str, body: str | None, labels: tuple[str, ...] = ()) -> Any:
        # labels in the create call: PyGithub's add_to_labels sends a bare array, which GitHub's description
        # does not model (the action tests validate all traffic against it)
        return self.repo().create_issue(title=title, body=body or "", labels=list(labels))

    def pull_request(self, branch: str, files: Mapping[str, str], title: str = "Improve the demo") -> Any:
        """Push ``branch`` (one commit changing ``files``) to the fake and open a pull request from it."""
        push_branch(self.bare, branch, files, title)
        return self.repo().create_pull(base="main", head=branch, title=title, body="Please review.")

    # --- events and the runner environment ---

    def _repository(self, payload: dict[str, Any]) -> None:
        set_repository(payload, self.name)

    def labeled(
        self, issue: Any, label: str = "swarm", sender: str = MAINTAINER, author: str = MAINTAINER
    ) -> dict[str, Any]:
        return labeled_event(self.name, issue, label, sender, author)

    def commented(
        self, number: int, text: str, *, on_pr: bool, login: str = MAINTAINER, association: str = "MEMBER"
    ) -> dict[str, Any]:
        issue = self.repo().get_issue(number)
        return comment_event(self.name, issue, text, on_pr=on_pr, login=login, association=association)

    def scheduled(self, cron: str) -> dict[str, Any]:
        payload = load_event("schedule.json")
        payload["repository"]["owner"] = copy.deepcopy(load_event("workflow_dispatch.json")["sender"])
        self._repository(payload)
        payload["schedule"] = cron
        return payload

    def dispatched(self, **inputs: str) -> dict[str, Any]:
        payload = load_event("workflow_dispatch.json")
        self._repository(payload)
        payload["inputs"] = inputs
        payload["sender"].update(login=MAINTAINER)
        return payload

    def env(self, event_name: str, payload: Mapping[str, Any], **inputs: str) -> dict[str, str]:
        """The step's environment as the runner and action.yml give it (inputs as CI_SWARM_*)."""
        event_path = self.tmp / f"event-{event_name}.json"
        event_path.write_text(json.dumps(payload))
        env = {
            **sealed_subset(os.environ),  # PATH, and the test's sealed HOME and git configuration
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": event_name,
            "GITHUB_EVENT_PATH": str(event_path),
            "GITHUB_REPOSITORY": self.name,
            "GITHUB_WORKSPACE": str(self.workspace),
            "GITHUB_API_URL": self.fake.base_url,
            "GITHUB_SERVER_URL": self.fake.base_url,
            "GITHUB_RUN_ID": "4242",
            "GITHUB_REF": "refs/heads/main",
            "GITHUB_OUTPUT": str(self.outputs),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "CI_SWARM_GITHUB_TOKEN": self.token,
        }
        env.update({f"CI_SWARM_{k.upper()}": v for k, v in inputs.items()})
        return env

    def commit_to_default(self, files: Mapping[str, str], message: str = "configure") -> None:
        """A commit on the fake's main (and the checkout follows it, as a new workflow run would)."""
        main = git.rev_parse(self.bare, "refs/heads/main")
        git.update_ref(self.bare, "refs/heads/main", commit(self.bare, main, files, message), main)
        git.run(self.workspace, "pull", "--quiet", "--ff-only", str(self.bare), "main")


def set_repository(payload: dict[str, Any], name: str) -> None:
    owner, _, short = name.partition("/")
    payload["repository"].update(full_name=name, name=short, default_branch="main")
    payload["repository"]["owner"]["login"] = owner


def labeled_event(
    name: str, issue: Any, label: str = "swarm", sender: str = MAINTAINER, author: str = MAINTAINER
) -> dict[str, Any]:
    """An ``issues``/``labeled`` payload (GitHub's shape) for a PyGithub ``issue`` of the fake, written by
    ``author`` (whose permission decides whether a swarm-plan block in its body is honoured)."""
    payload = load_event("issues.labeled.json")
    set_repository(payload, name)
    payload["issue"].update(number=issue.number, title=issue.title, body=issue.body, state=issue.state)
    payload["issue"]["user"].update(login=author, type="Bot" if author.endswith("[bot]") else "User")
    payload["label"]["name"] = label
    payload["sender"].update(login=sender, type="User")
    return payload


def comment_event(
    name: str, issue: Any, text: str, *, on_pr: bool, login: str = MAINTAINER, association: str = "MEMBER"
) -> dict[str, Any]:
    """An ``issue_comment``/``created`` payload; on a PR it has ``issue.pull_request``, as GitHub's does."""
    payload = load_event("issue_comment.created.pr.json" if on_pr else "issue_comment.created.json")
    set_repository(payload, name)
    payload["issue"].update(number=issue.number, title=issue.title, body=issue.body, state=issue.state)
    payload["issue"]["user"].update(login=MAINTAINER, type="User")
    payload["comment"].update(body=text, author_association=association, id=987654 + issue.number)
    payload["comment"]["user"].update(login=login, type="User")
    payload["sender"].update(login=login, type="User")
    return payload


def make_world(tmp_path: Path, files: Mapping[str, str] = FILES) -> Iterator[World]:
    source = make_repo(tmp_path / "source", files)
    fake = FakeGitHub(tmp_path / "fake-root")
    fake.add_repo(REPO, source)
    fake.add_token(TOKEN)
    fake.add_user(MAINTAINER, "write")
    fake.add_user("reader", "read")
    fake.add_user("triager", "triage")
    workspace = tmp_path / "workspace"
    git.run(tmp_path, "clone", "--quiet", str(source), str(workspace))
    git.run(workspace, "remote", "set-url", "origin", f"https://github.com/{REPO}.git")
    with fake:
        yield World(fake, source, workspace, tmp_path)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


# --- the fake GitHub as its own process, and act -----------------------------------------------------


@dataclass
class FakeProcess:
    """``python -m ci_swarm.testing.fake_github`` serving ``name`` from a bare copy under ``root``."""

    base_url: str
    root: Path
    name: str = REPO
    token: str = TOKEN

    @property
    def bare(self) -> Path:
        owner, _, short = self.name.partition("/")
        return self.root / owner / f"{short}.git"

    def gh(self) -> github.Github:
        return github.Github(
            auth=github.Auth.Token(self.token),
            base_url=self.base_url,
            retry=None,
            seconds_between_requests=None,
            seconds_between_writes=None,
        )

    def repo(self) -> Any:
        return self.gh().get_repo(self.name)


@contextmanager
def fake_github_process(root: Path, source: Path, name: str = REPO) -> Iterator[FakeProcess]:
    argv = [sys.executable, "-m", "ci_swarm.testing.fake_github", "--port", "0", "--root", str(root)]
    argv += ["--repo", f"{name}={source}", "--token", TOKEN]
    argv += ["--user", f"{MAINTAINER}=write", "--user", "reader=read"]
    child = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert child.stdout is not None
        base_url = child.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:"), base_url
        yield FakeProcess(base_url, root, name)
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def push_branch(bare: Path, branch: str, files: Mapping[str, str], message: str) -> None:
    """Someone pushes ``branch``: one commit on main changing ``files``, made straight in the bare repo."""
    git.update_ref(bare, f"refs/heads/{branch}", commit(bare, "refs/heads/main", files, message))


def user_repo(path: Path, files: Mapping[str, str], name: str = REPO) -> Path:
    """A git repository as a user has it: committed, ``origin`` on github.com (act takes the repo name
    from it)."""
    make_repo(path, files)
    git.run(path, "remote", "add", "origin", f"https://github.com/{name}.git")
    return path


def act_outputs(stdout: str) -> dict[str, str]:
    """The ``name=value`` pairs a workflow's last step printed after ``outputs:``."""
    for line in stdout.splitlines():
        if "| outputs:" in line:
            pairs = line.split("| outputs:", 1)[1].split()
            return dict(pair.split("=", 1) for pair in pairs)
    return {}


# --- act -------------------------------------------------------------------------------------------


def project_copy(dest: Path, extra: Mapping[str, str] = FILES) -> Path:
    """A git repository holding ci-swarm itself (action.yml + package) plus a small project to work on:
    what a workflow that ``uses: ./`` checks out."""
    dest.mkdir(parents=True)
    for name in ("action.yml", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(
        ROOT / "ci_swarm", dest / "ci_swarm", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    for path, content in extra.items():
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    return dest


def run_act(
    workdir: Path,
    event_name: str,
    payload: Mapping[str, Any],
    workflow: Path,
    *,
    token: str,
    env: Mapping[str, str],
    cache: Path,
    local_actions: Mapping[str, Path] | None = None,
    timeout: float = 420,
) -> subprocess.CompletedProcess[str]:
    """``act`` in host mode (no Docker): the real runner logic runs the workflow's steps on this machine."""
    event = workdir.parent / f"{workdir.name}-{event_name}.json"
    event.write_text(json.dumps(payload))
    argv = [
        str(ACT),
        event_name,
        "-e",
        str(event),
        "-W",
        str(workflow),
        "-P",
        "ubuntu-latest=-self-hosted",
        "--action-cache-path",
        str(cache),
        "-s",
        f"GITHUB_TOKEN={token}",
    ]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    for action, path in (local_actions or {}).items():
        argv += ["--local-repository", f"{action}={path}"]
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI_SWARM_", "INPUT_"))}
    child_env.pop("ANTHROPIC_API_KEY", None)
    return subprocess.run(
        argv, cwd=workdir, env=child_env, capture_output=True, text=True, timeout=timeout, check=False
    )
