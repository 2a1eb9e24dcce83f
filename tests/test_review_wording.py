"""The modify/delete review comment says what the pull request does with the file, in our words (git's
"… left in tree." is wrong when the deletion was kept), and no headline ends in ".."."""

from __future__ import annotations

from ci_swarm.github.review import file_body
from ci_swarm.models import Conflict, ConflictKind

GIT_SAYS = (
    "CONFLICT (modify/delete): src/old.py deleted in code and modified in tests.  "
    "Version tests of src/old.py left in tree."
)


def modify_delete(kept: str, other: str) -> Conflict:
    return Conflict("src/old.py", ConflictKind.MODIFY_DELETE, "tests", "code", (0, 0), kept, other, "base\n",
                    reason=GIT_SAYS)  # fmt: skip


def test_a_kept_deletion_says_the_pull_request_deletes_the_file() -> None:
    body = file_body(modify_delete(kept="", other="changed\n"))
    headline = body.splitlines()[0]
    assert "code deleted the file and tests changed it: this pull request deletes it." in headline
    assert "left in tree" not in body and ".." not in headline
    assert "changed" in body  # the other side's version is quoted


def test_a_kept_change_says_the_pull_request_keeps_it() -> None:
    body = file_body(modify_delete(kept="changed\n", other=""))
    headline = body.splitlines()[0]
    assert "code changed the file and tests deleted it: this pull request keeps code's version." in headline
    assert "left in tree" not in body and "(deleted)" in body


def test_other_reasons_end_in_one_full_stop() -> None:
    c = Conflict("a.bin", ConflictKind.BINARY, "tests", "code", (0, 0), "", "", "", reason="both changed it.")
    assert file_body(c).splitlines()[0].endswith("collided — both changed it.")
