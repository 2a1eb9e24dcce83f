"""secretscan: every secret a push would carry is found and named by place, never by value.

Token-shaped test values are built at run time from a seeded generator, so this file holds none.
"""

from __future__ import annotations

import base64
import random
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ci_swarm import git
from ci_swarm.errors import EXIT_FORGE, ForgeError, GitError, SecretFound
from ci_swarm.secretscan import (
    BINARY,
    CONTENT,
    FILE_NAME,
    MESSAGE,
    Detector,
    Finding,
    c_unquote,
    ensure_no_secrets,
    header_path,
    scan_range,
    secret_variants,
)
from tests.fixtures import USER, make_repo, write_files

SECRET = "s3cr3t-" + "Vq9ZLk2wPx"  # the run's secret (not token-shaped)
ALNUM = string.ascii_letters + string.digits
RNG = random.Random(20260907)


def rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "hello\n", "src/app.py": "one\ntwo\nthree\n"})


def commit(repo: Path, files: dict[str, str | bytes], message: str = "change\n") -> str:
    write_files(repo, files)
    sha = git.commit_all(repo, message, USER)
    assert sha
    return sha


def assert_no_value(findings: tuple[Finding, ...], *values: str) -> None:
    for finding in findings:
        for value in values:
            assert value not in str(finding)
            assert value not in repr(finding)


# --- the run's own secrets ------------------------------------------------------------------------


def test_exact_secret_in_an_added_line_is_named_by_commit_file_and_line(repo: Path) -> None:
    base = git.head_commit(repo)
    sha = commit(repo, {"src/app.py": f"one\ntwo\ntoken = '{SECRET}'\nthree\n"})
    findings = scan_range(repo, base, sha, [SECRET])
    assert findings == (Finding(sha, "src/app.py", 3, "run secret", CONTENT),)
    assert str(findings[0]) == f"{sha[:12]} src/app.py:3: run secret"
    assert_no_value(findings, SECRET)


def _in_base64(prefix: bytes, encode: Callable[[bytes], bytes]) -> str:
    return encode(prefix + SECRET.encode() + b"!tail").decode()


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (_in_base64(b"", base64.b64encode), "run secret (base64)"),
        (_in_base64(b"x", base64.b64encode), "run secret (base64)"),
        (_in_base64(b"xy", base64.b64encode), "run secret (base64)"),
        (_in_base64(b"x-access-token:", base64.b64encode), "run secret (base64)"),
        (_in_base64(b"\xfb\xff", base64.urlsafe_b64encode), "run secret (base64)"),
        (_in_base64(b"\xfb", base64.urlsafe_b64encode), "run secret (base64)"),
        (SECRET.encode().hex(), "run secret (hex)"),
        (SECRET.encode().hex().upper(), "run secret (hex)"),
    ],
)
def test_encoded_secrets_are_found(repo: Path, text: str, kind: str) -> None:
    base = git.head_commit(repo)
    sha = commit(repo, {"config.txt": f"header\nvalue: {text}\n"})
    findings = scan_range(repo, base, sha, [SECRET])
    assert [(f.path, f.line, f.kind) for f in findings] == [("config.txt", 2, kind)]
    assert_no_value(findings, SECRET, text)


def test_url_encoded_secret_is_found(repo: Path) -> None:
    secret = "pa ss/word@42"
    base = git.head_commit(repo)
    sha = commit(repo, {"a.txt": "form: password=pa%20ss%2Fword%4042&x=1\n"})
    assert [f.kind for f in scan_range(repo, base, sha, [secret])] == ["run secret (url-encoded)"]


def test_base64_variants_cover_every_alignment() -> None:
    variants = secret_variants(SECRET)
    for prefix in (b"", b"a", b"ab", b"abc", b"abcd"):
        for suffix in (b"", b"z", b"zz"):
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                stream = encode(prefix + SECRET.encode() + suffix)
                assert any(v in stream for v, k in variants.items() if k == "run secret (base64)")


def test_short_secrets_are_ignored(repo: Path) -> None:
    base = git.head_commit(repo)
    sha = commit(repo, {"a.txt": "abc1234 is everywhere\n"})
    assert secret_variants("abc1234") == {}
    assert scan_range(repo, base, sha, ["abc1234", ""]) == ()
    assert [f.kind for f in scan_range(repo, base, sha, ["abc1234 "])] == ["run secret"]


def test_secret_added_then_removed_still_travels_in_history(repo: Path) -> None:
    base = git.head_commit(repo)
    added = commit(repo, {"notes.txt": f"a\n{SECRET}\n"})
    tip = commit(repo, {"notes.txt": "a\n"})
    assert git.read_blob(repo, f"{tip}:notes.txt") == b"a\n"
    assert scan_range(repo, base, tip, [SECRET]) == (Finding(added, "notes.txt", 2, "run secret"),)


def test_only_what_the_range_adds_is_scanned(repo: Path) -> None:
    already = commit(repo, {"old.txt": f"{SECRET}\n"})
    tip = commit(repo, {"new.txt": "clean\n", "old.txt": f"{SECRET}\nmore\n"})
    assert scan_range(repo, already, tip, [SECRET]) == ()
    assert scan_range(repo, tip, tip, [SECRET]) == ()
    assert [f.commit for f in scan_range(repo, None, tip, [SECRET])] == [already]


def test_file_names_are_scanned_and_shown_redacted(repo: Path) -> None:
    base = git.head_commit(repo)
    sha = commit(repo, {f"dir/{SECRET}.txt": "clean\n"})
    findings = scan_range(repo, base, sha, [SECRET])
    assert findings == (Finding(sha, "dir/***.txt", 0, "run secret", FILE_NAME),)
    assert str(findings[0]) == f"{sha[:12]} file name dir/***.txt: run secret"
    assert_no_value(findings, SECRET)


def test_content_findings_in_a_secret_file_name_are_redacted_too(repo: Path) -> None:
    base = git.head_commit(repo)
    sha = commit(repo, {f"{SECRET}": f"{SECRET}\n"})
    findings = scan_range(repo, base, sha, [SECRET])
    assert {(f.path, f.where) for f in findings} == {("***", FILE_NAME), ("***", CONTENT)}
    assert_no_value(findings, SECRET)


def test_commit_messages_are_scanned(repo: Path) -> None:
    base = git.head_commit(repo)
    sha = commit(repo, {"a.txt": "x\n"}, message=f"subject\n\nbody\nkey={SECRET}\n")
    findings = scan_range(repo, base, sha, [SECRET])
    assert findings == (Finding(sha, "", 4, "run secret", MESSAGE),)
    assert str(findings[0]) == f"{sha[:12]} commit message line 4: run secret"


def test_binary_blobs_are_searched_as_raw_bytes(repo: Path) -> None:
    base = git.head_commit(repo)
    data = b"\0\x01\x02 header\n\xff\xfe" + SECRET.encode() + b"\0\0more"
    sha = commit(repo, {"img.bin": data})
    assert b"Binary files" in git.run(repo, "show", sha).stdout
    findings = scan_range(repo, base, sha, [SECRET])
    assert findings == (Finding(sha, "img.bin", 2, "run secret", BINARY),)
    assert str(findings[0]).endswith("(binary file)")


def test_deleted_binary_is_not_read(repo: Path) -> None:
    commit(repo, {"img.bin": b"\0" + SECRET.encode()})
    base = git.head_commit(repo)
    (repo / "img.bin").unlink()
    sha = commit(repo, {})
    assert scan_range(repo, base, sha, [SECRET]) == ()


def test_a_merge_reports_what_its_side_added_once(repo: Path) -> None:
    base = git.head_commit(repo)
    git.run(repo, "checkout", "--quiet", "-b", "side")
    side = commit(repo, {"side.txt": f"{SECRET}\n"})
    git.run(repo, "checkout", "--quiet", "main")
    main = commit(repo, {"main.txt": "clean\n"})
    merge = git.commit_tree(
        repo, git.out(repo, "merge-tree", "--write-tree", main, side), [main, side], "merge\n"
    )
    assert scan_range(repo, base, merge, [SECRET]) == (Finding(side, "side.txt", 1, "run secret"),)


def test_content_in_a_merge_resolution_is_scanned(repo: Path) -> None:
    base = git.head_commit(repo)
    git.run(repo, "checkout", "--quiet", "-b", "side")
    side = commit(repo, {"side.txt": "clean\n"})
    git.run(repo, "checkout", "--quiet", "main")
    main = commit(repo, {"main.txt": "clean\n"})
    git.run(repo, "merge", "--quiet", "--no-commit", "side", env=USER.env())
    merge = commit(repo, {"resolved.txt": f"{SECRET}\n"}, message="merge\n")
    assert git.rev_parse(repo, f"{merge}^2") == side
    assert scan_range(repo, base, merge, [SECRET]) == (Finding(merge, "resolved.txt", 1, "run secret"),)
    assert git.rev_parse(repo, f"{merge}^1") == main


# --- parsing the patch stream ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["a b.txt", "tab\there.txt", 'quote".txt', "back\\slash.txt", "ünï cødé.txt", "new\nline.txt", " lead"],
)
def test_awkward_file_names(repo: Path, name: str) -> None:
    base = git.head_commit(repo)
    sha = commit(repo, {f"d/{name}": f"x\n{SECRET}\n"})
    findings = scan_range(repo, base, sha, [SECRET])
    assert findings == (Finding(sha, f"d/{name}", 2, "run secret"),)
    assert "\n" not in str(findings[0]) and "\t" not in str(findings[0])


def test_added_lines_that_look_like_headers_are_content(repo: Path) -> None:
    base = git.head_commit(repo)
    text = f"++ b/evil\n+++ b/other\ndiff --git a/x b/x\n@@ -1 +1,900 @@\n\x01{'0' * 40}\n{SECRET}\n"
    sha = commit(repo, {"tricky.txt": text})
    assert scan_range(repo, base, sha, [SECRET]) == (Finding(sha, "tricky.txt", 6, "run secret"),)


def test_line_numbers_in_modified_files(repo: Path) -> None:
    lines = [f"line {i}" for i in range(1, 101)]
    commit(repo, {"long.txt": "\n".join(lines) + "\n"})
    base = git.head_commit(repo)
    lines[9] = f"changed {SECRET}"
    lines.insert(50, "inserted")
    lines.insert(80, SECRET)
    lines.pop(0)
    sha = commit(repo, {"long.txt": "\n".join(lines) + "\n"})
    findings = scan_range(repo, base, sha, [SECRET])
    assert [f.line for f in findings] == [9, 80]
    assert [lines[f.line - 1].endswith(SECRET) for f in findings] == [True, True]


def test_no_newline_at_end_of_file(repo: Path) -> None:
    base = git.head_commit(repo)
    sha = commit(repo, {"a.txt": f"one\n{SECRET}", "b.txt": f"{SECRET}\n"})
    assert [(f.path, f.line) for f in scan_range(repo, base, sha, [SECRET])] == [("a.txt", 2), ("b.txt", 1)]


@pytest.mark.parametrize(
    ("header", "path"),
    [
        (b"a/x.txt b/x.txt", b"x.txt"),
        (b"a/a b/c b/a b/c", b"a b/c"),
        (b'"a/t\\tx" "b/t\\tx"', b"t\tx"),
        (b'"a/q\\"\\\\\\303\\251" "b/q\\"\\\\\\303\\251"', 'q"\\é'.encode()),
    ],
)
def test_header_path(header: bytes, path: bytes) -> None:
    assert header_path(header) == path


def test_c_unquote() -> None:
    assert c_unquote(b'a\\nb\\tc\\\\d\\"e\\101') == b'a\nb\tc\\d"eA'


# --- token formats ------------------------------------------------------------------------------


def gh(prefix: str) -> str:
    return "g" + "h" + prefix + "_" + rand(36)


def private_key(kind: str = "RSA ", sep: str = "\n") -> str:
    body = sep.join(rand(64, ALNUM + "+/") for _ in range(4))
    return f"-----BEGIN {kind}PRIVATE KEY-----{sep}{body}{sep}-----END {kind}PRIVATE KEY-----"


TOKENS: list[tuple[str, str]] = [
    *((f"token = '{gh(p)}'", "GitHub token") for p in "pousr"),
    (f"auth: {'github' + '_pat_'}{rand(22)}_{rand(59)}", "GitHub fine-grained token"),
    (f"ANTHROPIC_API_KEY={'sk-' + 'ant-'}api03-{rand(93, ALNUM + '-_')}AA", "Anthropic API key"),
    (f"ANTHROPIC_ADMIN={'sk-' + 'ant-'}admin01-{rand(93, ALNUM + '-_')}AA", "Anthropic API key"),
    (f"aws_access_key_id = {'AK' + 'IA'}{rand(16, string.ascii_uppercase + '234567')}", "AWS access key id"),
    (f"id: {'AS' + 'IA'}{rand(16, string.ascii_uppercase + '234567')}", "AWS access key id"),
    (
        f"slack = '{'xo' + 'xb'}-{rand(12, string.digits)}-{rand(13, string.digits)}-{rand(24)}'",
        "Slack token",
    ),
    (
        "-".join(
            ["xo" + "xp", rand(11, string.digits), rand(11, string.digits), rand(12, string.digits), rand(32)]
        ),
        "Slack token",
    ),
    (f"url = 'https://deploy:{rand(20)}@git.internal.io/repo.git'", "URL credentials"),
    (f"DATABASE_URL=postgres://app:{rand(16)}@db.prod.local:5432/app", "URL credentials"),
]


@pytest.mark.parametrize(("line", "kind"), TOKENS)
def test_token_formats_are_found(repo: Path, line: str, kind: str) -> None:
    base = git.head_commit(repo)
    sha = commit(repo, {"settings.env": f"# settings\n{line}\n"})
    findings = scan_range(repo, base, sha, [])
    assert [(f.path, f.line, f.kind) for f in findings] == [("settings.env", 2, kind)]
    token = line.split("=")[-1].split(": ")[-1].strip(" '")
    assert_no_value(findings, token)


@pytest.mark.parametrize(
    "key",
    [
        private_key(),
        private_key("OPENSSH "),
        private_key(""),
        private_key("EC ", "\\n"),
        private_key("ENCRYPTED "),
    ],
)
def test_private_keys_are_found_on_their_begin_line(repo: Path, key: str) -> None:
    base = git.head_commit(repo)
    sha = commit(repo, {"key.pem": f"intro\n\n{key}\n"})
    assert [(f.line, f.kind) for f in scan_range(repo, base, sha, [])] == [(3, "private key")]


def test_pgp_and_proc_type_headers(repo: Path) -> None:
    base = git.head_commit(repo)
    pgp = f"-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\n\n{rand(64)}\n"
    headers = f"Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,{rand(32)}\n"
    pem = f"-----BEGIN RSA PRIVATE KEY-----\n{headers}\n{rand(64)}\n"
    sha = commit(repo, {"a.asc": pgp, "b.pem": pem})
    assert [(f.path, f.line) for f in scan_range(repo, base, sha, [])] == [("a.asc", 1), ("b.pem", 1)]


NOT_SECRETS = [
    "token = 'g" + "hp_" + "x" * 36 + "'",
    "token = 'g" + "hp_" + "0123456789" * 3 + "'",
    "short = 'g" + "hp_" + rand(20) + "'",
    "aws_access_key_id = AK" + "IAIOSFODNN7EXAMPLE",
    "AK" + "IA" + "A" * 16,
    "ASIAPACIFIC_REGION_NAME = 'ap'",
    "key = 'sk-" + "ant-...'",
    "key = 'sk-" + "ant-api03-" + "x" * 40 + "'",
    "SLACK = 'xo" + "xb-your-token-here'",
    'if line.startswith("-----BEGIN RSA PRIVATE KEY-----"):',
    "PEM_HEADER = '-----BEGIN PRIVATE KEY-----'",
    "url = f'https://x-access-token:{token}@github.com/o/r.git'",
    "url = 'https://${USER}:${PASSWORD}@github.com/o/r.git'",
    "url = 'https://user:password@example.com/'",
    "url = 'https://alice:s3cure-Pw-123@example.org/'",
    "DATABASE_URL=postgres://postgres:postgres@localhost/db",
    "url = 'https://%s:%s@%s' % (user, pw, host)",
    "url = 'https://<user>:<token>@host.example/'",
    "url = 'https://user:***@github.com/'",
    "git@github.com:owner/repo.git and ssh://git@github.com/owner/repo",
    "see https://github.com/o/r/blob/main/a.py#L10 and mailto:someone@example.com",
    "sha = 'd4f04cd9a6b6f3b0000000000000000000000000'",
]


@pytest.mark.parametrize("line", NOT_SECRETS)
def test_placeholders_and_lookalikes_are_not_findings(repo: Path, line: str) -> None:
    base = git.head_commit(repo)
    sha = commit(repo, {"example.py": f"{line}\n"})
    assert scan_range(repo, base, sha, []) == ()


def test_token_in_a_url_is_reported_as_both(repo: Path) -> None:
    base = git.head_commit(repo)
    sha = commit(repo, {"a.sh": f"git push https://x-access-token:{gh('s')}@github.com/o/r\n"})
    assert sorted(f.kind for f in scan_range(repo, base, sha, [])) == ["GitHub token", "URL credentials"]


def test_token_file_names_are_redacted(repo: Path) -> None:
    base = git.head_commit(repo)
    token = gh("p")
    sha = commit(repo, {f"leak-{token}.txt": "x\n"})
    findings = scan_range(repo, base, sha, [])
    assert [(f.path, f.where) for f in findings] == [("leak-***.txt", FILE_NAME)]


def test_detector_repr_and_redact_never_show_values() -> None:
    detector = Detector([SECRET])
    assert SECRET not in repr(detector)
    assert detector.redact(f"a {SECRET} b {SECRET}{SECRET}".encode()) == b"a *** b ******"
    assert detector.redact(b"nothing here") == b"nothing here"


# --- the error, and scale -----------------------------------------------------------------------


def test_secret_found_names_places_never_values(repo: Path) -> None:
    base = git.head_commit(repo)
    sha = commit(repo, {f"f{i}.txt": f"{SECRET}\n" for i in range(7)})
    with pytest.raises(SecretFound) as info:
        ensure_no_secrets(repo, base, sha, [SECRET])
    err = info.value
    assert err.exit_code == EXIT_FORGE == 7
    assert not isinstance(err, ForgeError)
    text = str(err)
    assert "\n" not in text
    assert f"{sha[:12]} f0.txt:1: run secret" in text
    assert "7 secret(s)" in text and "and 2 more" in text
    assert len(err.findings) == 7
    for shown in (text, repr(err), repr(err.args), repr(err.findings)):
        assert SECRET not in shown


def test_clean_range_passes(repo: Path) -> None:
    base = git.head_commit(repo)
    sha = commit(repo, {"a.txt": "nothing to see\n"})
    ensure_no_secrets(repo, base, sha, [SECRET])


def test_git_failure_carries_no_output(repo: Path) -> None:
    with pytest.raises(GitError) as info:
        scan_range(repo, "no-such-rev", "HEAD", [SECRET])
    assert info.value.stdout == ""


def fast_import_stream(files: int, needle_at: int) -> bytes:
    parts = [b"commit refs/heads/big\ncommitter A <a@example.com> 0 +0000\ndata 4\nbig\n"]
    for i in range(files):
        body = f"file {i}\nvalue {i}\n" + (f"x = '{SECRET}'\n" if i == needle_at else "")
        data = body.encode()
        parts.append(f"M 100644 inline dir{i % 50}/f{i}.txt\ndata {len(data)}\n".encode() + data + b"\n")
    return b"".join(parts)


def test_a_20k_file_initial_commit_is_one_log_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "big"
    repo.mkdir()
    git.run(repo, "init", "--quiet")
    git.run(repo, "fast-import", "--quiet", input=fast_import_stream(20_000, needle_at=12_345))
    tip = git.rev_parse(repo, "big")
    calls: list[tuple[str, ...]] = []
    real_run = git.run

    def counting_run(cwd: Path, *args: str, **kwargs: Any) -> git.Result:
        calls.append(args)
        return real_run(cwd, *args, **kwargs)

    monkeypatch.setattr(git, "run", counting_run)
    findings = scan_range(repo, None, tip, [SECRET])
    assert findings == (Finding(tip, "dir45/f12345.txt", 3, "run secret"),)
    assert [c[0] for c in calls] == ["log", "log"]


def test_empty_and_mode_only_commits_keep_the_stream_in_step(repo: Path) -> None:
    base = git.head_commit(repo)
    git.run(repo, "commit", "--quiet", "--allow-empty", "-m", "empty", env=USER.env())
    (repo / "src/app.py").chmod(0o755)
    mode_only = commit(repo, {})
    git.run(repo, "commit", "--quiet", "--allow-empty", "-m", "empty again", env=USER.env())
    sha = commit(repo, {"after.txt": f"{SECRET}\n"})
    assert git.changed_files(repo, f"{mode_only}^", mode_only) == ("src/app.py",)
    assert scan_range(repo, base, sha, [SECRET]) == (Finding(sha, "after.txt", 1, "run secret"),)


def test_files_git_diffs_as_binary_by_attribute_are_read_raw(repo: Path) -> None:
    base = git.head_commit(repo)
    sha = commit(repo, {".gitattributes": "*.dat -diff\n", "data/x.dat": f"a\nb\n{SECRET}\n"})
    assert b"Binary files" in git.run(repo, "show", sha).stdout
    findings = scan_range(repo, base, sha, [SECRET])
    assert findings == (Finding(sha, "data/x.dat", 3, "run secret", BINARY),)


def test_the_same_secret_in_many_binaries_reads_each_blob_once(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = git.head_commit(repo)
    sha = commit(repo, {f"b{i}.bin": b"\0" + SECRET.encode() for i in range(3)})
    inputs: list[bytes] = []
    real_run = git.run

    def spy(cwd: Path, *args: str, **kwargs: Any) -> git.Result:
        if args[0] == "cat-file":
            inputs.append(kwargs["input"])
        return real_run(cwd, *args, **kwargs)

    monkeypatch.setattr(git, "run", spy)
    findings = scan_range(repo, base, sha, [SECRET])
    assert [(f.path, f.where) for f in findings] == [(f"b{i}.bin", BINARY) for i in range(3)]
    assert len(inputs) == 1 and inputs[0].count(b"\n") == 1
