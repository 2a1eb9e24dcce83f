"""gitpaths: every .git spelling git refuses is refused, and the verdicts agree with real git."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_swarm import git
from ci_swarm.errors import PathEscapeError
from ci_swarm.gitpaths import check_tree_path, is_git_dir_name, is_gitmodules_name
from tests.fixtures.env import seal

ZWNJ, ZWJ, BOM, RLO, NDS = "\u200c", "\u200d", "\ufeff", "\u202e", "\u206f"

# Paths refused because a component is .git to git (any case, NTFS or HFS+ spelling).
DOTGIT = [
    ".git",
    ".git/config",
    ".GIT/config",
    ".Git/hooks/pre-commit",
    "sub/.Git",
    "sub/.git/x",
    "a/b/.gIt",
    "git~1/x",
    "GIT~1/config",
    "sub/Git~1",
    "git~1./x",
    ".git./x",
    ".git../x",
    ".git /x",
    ".git . /x",
    "sub/.git ",
    ".git::$INDEX_ALLOCATION/x",
    ".git:foo",
    f".g{ZWNJ}it/x",
    f".git{ZWNJ}/config",
    f"{ZWNJ}.git",
    f".gi{ZWJ}t",
    f".{BOM}git/config",
    f".GI{RLO}T/x",
    f"sub/.git{NDS}",
    f".{ZWJ}{ZWNJ}G{BOM}i{ZWJ}t/x",
]

# Paths that look like .git but are not: accepted, unchanged.
LOOKALIKES = [
    ".gitignore",
    ".github/workflows/ci.yml",
    ".gitattributes",
    "sub/.gitmodules",
    ".git-foo/x",
    ".gitx",
    ".git~1/x",
    "x.git/y",
    "git",
    "git~2/x",
    "git~10/x",
    ".git\u00a0/x",  # NO-BREAK SPACE is not ignored by HFS+
    f".g{ZWNJ}ithub/x",
    ".../x",
    "a b/c d.txt",
    "ünïcode/ß.txt",
]

# Accepted, in normalised form.
NORMALISED = {
    "./a//b/": "a/b",
    "a/./b": "a/b",
    "dir/": "dir",
    "a//b": "a/b",
    "src/app.py": "src/app.py",
}

# Refused by git and by us, for reasons other than .git.
REFUSED_BOTH = ["", ".", "./", "/etc/passwd", "//server/share", "../x", "a/../b", "a/..", "a\\.git\\x"]

# Refused by us although git on Linux accepts them: stricter on purpose (see the module docstring).
STRICTER = [
    "a\\b",
    "dir\\file.txt",
    "tab\there",
    "new\nline",
    "del\x7f",
    "c1\x85char",
    "C:x",
    "c:/windows",
    "bad\udcffutf8",
]

SYMLINK_REFUSED = [
    ".gitmodules",
    ".GITMODULES",
    "sub/.GitModules",
    ".gitmodules.",
    ".gitmodules :x",
    "gitmod~1",
    "GITMOD~4",
    "gi7eba~1",
    "gi7eba~9",
    "gi7eb~12",
    "GI7E~123",
    f".g{ZWNJ}itmodules",
    f".gitmodules{BOM}",
]
SYMLINK_ACCEPTED = [".gitmodulesx", "gitmod~5", "gitmodules", ".gitmodule", "sub/link"]
SYMLINK_STRICTER = [".gitmodules./x"]


@pytest.fixture(scope="module")
def git_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    repo = tmp_path_factory.mktemp("gitpaths-repo")
    with pytest.MonkeyPatch.context() as monkeypatch:
        # module-scoped, so made before the conftest's per-test seal: seal it the same way
        seal(monkeypatch, tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("cache"))
        git.run(repo, "init", "--quiet")
        yield repo, git.write_blob(repo, b"x\n")


_counter = iter(range(10**9))


def git_accepts(repo_blob: tuple[Path, str], path: str, mode: str = "100644") -> bool:
    """Whether git itself (protectNTFS and protectHFS on) adds ``path`` to a fresh index."""
    repo, blob = repo_blob
    env = {"GIT_INDEX_FILE": str(repo / ".git" / f"index-{next(_counter)}")}
    args = ["-c", "core.protectNTFS=true", "-c", "core.protectHFS=true"]
    result = git.run(
        repo, *args, "update-index", "--add", "--cacheinfo", mode, blob, path, env=env, ok=(0, 1, 128)
    )
    return result.returncode == 0


def verdict(path: str, *, symlink: bool = False) -> str | None:
    try:
        return check_tree_path(path, symlink=symlink)
    except PathEscapeError:
        return None


@pytest.mark.parametrize("path", DOTGIT)
def test_dotgit_spellings_are_refused_naming_the_path(path: str) -> None:
    with pytest.raises(PathEscapeError) as info:
        check_tree_path(path)
    message = str(info.value)
    assert repr(path) in message
    assert "\n" not in message
    assert "is .git to git" in message


@pytest.mark.parametrize("path", [*LOOKALIKES, *SYMLINK_ACCEPTED, "sub/.gitmodules"])
def test_lookalikes_are_accepted_unchanged(path: str) -> None:
    assert check_tree_path(path) == path


@pytest.mark.parametrize(("path", "expected"), NORMALISED.items())
def test_paths_are_normalised(path: str, expected: str) -> None:
    assert check_tree_path(path) == expected


@pytest.mark.parametrize("path", [*REFUSED_BOTH, *STRICTER, "a\0b", "\0"])
def test_other_refusals(path: str) -> None:
    with pytest.raises(PathEscapeError, match="refused"):
        check_tree_path(path)


def test_backslash_is_not_silently_a_separator() -> None:
    with pytest.raises(PathEscapeError, match="backslash"):
        check_tree_path("a\\b")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/abs", "absolute"),
        ("C:x", "absolute"),
        ("a/../b", "'..'"),
        ("a\0b", "NUL"),
        ("a\tb", "control character"),
        ("", "empty"),
        ("./", "names no file"),
    ],
)
def test_refusal_reasons(path: str, reason: str) -> None:
    with pytest.raises(PathEscapeError, match=reason):
        check_tree_path(path)


@pytest.mark.parametrize("path", SYMLINK_REFUSED)
def test_gitmodules_symlinks_are_refused(path: str) -> None:
    assert check_tree_path(path) == path  # an ordinary file may have these names
    with pytest.raises(PathEscapeError, match="symlink"):
        check_tree_path(path, symlink=True)


@pytest.mark.parametrize("path", SYMLINK_ACCEPTED)
def test_other_symlinks_are_accepted(path: str) -> None:
    assert check_tree_path(path, symlink=True) == path


@pytest.mark.parametrize(
    ("component", "expected"),
    [
        *(
            (c, True)
            for c in [".git", ".GIT", ".gIT", "git~1", "GiT~1", ".git.", ".git ", ".git. .", ".git:x"]
        ),
        *(
            (c, True)
            for c in [".git::$INDEX_ALLOCATION", "git~1 ", f".g{ZWNJ}it", f"{BOM}.git", f".git{ZWJ}"]
        ),
        *((c, True) for c in [".git\\x", ".git\udcff"]),  # git: a backslash or an undecodable byte ends it
        *((c, False) for c in ["git", ".gitx", ".git~1", "git~2", "git~11", ".gi", "", ".", "..", "x.git"]),
        *((c, False) for c in [".git\u00a0", f".gi{ZWNJ}x", ".gi\udcfft", "\udcff.git", ".gït"]),
    ],
)
def test_is_git_dir_name(component: str, expected: bool) -> None:
    assert is_git_dir_name(component) is expected


@pytest.mark.parametrize(
    ("component", "expected"),
    [
        *((c, True) for c in [".gitmodules", ".GitModules", ".gitmodules .", ".gitmodules:x", "GITMOD~1"]),
        *(
            (c, True)
            for c in ["gitmod~4", "gi7eba~1", "GI7EBA~3", "gi7eb~12", "gi7e~123", f".gitm{ZWJ}odules"]
        ),
        *((c, False) for c in ["gitmod~5", "gitmod~0", "gi7eba~0", "gi7ebx~1", ".gitmodulesx", "gitmodules"]),
        *((c, False) for c in ["gi7eba~1x", "gi7eba", ".gitmodule", "gi7ebaa~1"]),
    ],
)
def test_is_gitmodules_name(component: str, expected: bool) -> None:
    assert is_gitmodules_name(component) is expected


# --- agreement with git itself ------------------------------------------------------------------

ALL_CASES = [*DOTGIT, *LOOKALIKES, *NORMALISED, *REFUSED_BOTH, *STRICTER]


@pytest.mark.parametrize("path", ALL_CASES)
def test_agrees_with_git(git_repo: tuple[Path, str], path: str) -> None:
    """We never accept what git refuses; we refuse what git accepts only for the STRICTER paths."""
    ours = verdict(path)
    git_ok = git_accepts(git_repo, path)
    if ours is None:
        assert not git_ok or path in STRICTER
    else:
        assert git_accepts(git_repo, ours)
        assert git_ok or ours != path


@pytest.mark.parametrize("path", [*DOTGIT, *REFUSED_BOTH])
def test_git_refuses_these_too(git_repo: tuple[Path, str], path: str) -> None:
    assert not git_accepts(git_repo, path)


@pytest.mark.parametrize("path", [*LOOKALIKES, *STRICTER, *SYMLINK_STRICTER])
def test_git_accepts_these(git_repo: tuple[Path, str], path: str) -> None:
    """The lookalikes are real negatives and the STRICTER list holds only paths git accepts."""
    assert git_accepts(git_repo, path)


@pytest.mark.parametrize("path", [*SYMLINK_REFUSED, *SYMLINK_ACCEPTED, *SYMLINK_STRICTER])
def test_symlink_verdicts_agree_with_git(git_repo: tuple[Path, str], path: str) -> None:
    ours = verdict(path, symlink=True)
    git_ok = git_accepts(git_repo, path, mode="120000")
    if path in SYMLINK_STRICTER:
        assert ours is None and git_ok
    else:
        assert (ours is not None) is git_ok


def test_protection_matters_for_ntfs_and_hfs_spellings(git_repo: tuple[Path, str]) -> None:
    """The agreement tests have teeth: without the protections git on Linux accepts these spellings."""
    repo, blob = git_repo
    env = {"GIT_INDEX_FILE": str(repo / ".git" / "index-unprotected")}
    off = ["-c", "core.protectNTFS=false", "-c", "core.protectHFS=false"]
    for path in ["git~1/x", ".git./x", f".g{ZWNJ}it/x"]:
        git.run(repo, *off, "update-index", "--add", "--cacheinfo", "100644", blob, path, env=env)
        assert verdict(path) is None
