"""Pushes authenticate with our token even when a checkout persisted another one in .git/config."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci_swarm import git
from ci_swarm.errors import GitError
from ci_swarm.testing.fake_github import FakeGitHub
from tests.fixtures import make_repo

TOKEN = "ghs_OursT0kenForThePushThatMustWin11"
STALE = "ghs_CheckoutPersistedT0kenThatIsWrong"


@pytest.mark.parametrize("scope", ["origin", "generic"])
def test_push_uses_our_token_over_a_persisted_checkout_header(tmp_path: Path, scope: str) -> None:
    work = make_repo(tmp_path / "work", {"a.txt": "a\n"})
    with FakeGitHub() as fake:
        fake.add_repo("octo/demo", work)
        fake.add_token(TOKEN, "alice")
        url = f"{fake.base_url}/octo/demo.git"
        # what actions/checkout leaves behind (persist-credentials: true), with a token the server refuses
        key = f"http.{fake.base_url}/.extraheader" if scope == "origin" else "http.extraheader"
        stale = git.auth_env(STALE, url)["GIT_CONFIG_VALUE_1"]
        git.run(work, "config", key, stale)
        with pytest.raises(GitError):  # the stale header alone is refused: the test can tell them apart
            git.run(work, "push", url, "main:refs/heads/stale")
        (work / "b.txt").write_text("b\n")
        tip = git.commit_all(work, "b\n", git.SWARM_IDENTITY)
        assert tip is not None
        result = git.push(work, url, ["main:refs/heads/ours"], TOKEN)
        assert TOKEN not in result.text + result.stderr
        assert git.out(fake.repo("octo/demo").path, "rev-parse", "refs/heads/ours") == tip


def test_auth_env_scopes_the_header_to_the_origin_and_resets_it_first() -> None:
    env = git.auth_env(TOKEN, "https://github.com/octo/demo.git")
    assert env["GIT_CONFIG_KEY_0"] == env["GIT_CONFIG_KEY_1"] == "http.https://github.com/.extraheader"
    assert env["GIT_CONFIG_VALUE_0"] == ""
    assert env["GIT_CONFIG_VALUE_1"].startswith("AUTHORIZATION: basic ")
    assert TOKEN not in " ".join(env.values())  # base64 only, and only in the environment
