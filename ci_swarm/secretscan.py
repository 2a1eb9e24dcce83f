"""Nothing secret is pushed: scan the commits of a push for the run's secrets and common token formats.

:func:`scan_range` reads what ``base..tip`` adds, commit by commit — a secret added and removed later still
travels in history — and returns :class:`Finding` values naming commit, file, line and kind, **never the
value**; :func:`ensure_no_secrets` raises :class:`~ci_swarm.errors.SecretFound` when there is any.

What is scanned, per commit of the range (merges against their first parent, root commits against the
empty tree): the lines its own diff adds, the names of the files it adds, its message, and — for files git
calls binary — the raw bytes of the new blob. Two ``git log`` processes and at most one ``cat-file --batch``
for the whole range, whatever its size: cost is linear in what the range adds. A place (file, line,
kind) already reported for an earlier commit is not repeated: a merge re-shows, against its first parent,
what its second parent added, and the commit that added it is the one to name.

What is looked for:

- **The run's own secrets**, exactly, and encoded: base64 at all three byte alignments (a token inside an
  encoded ``user:token`` Basic header), standard and URL-safe; hex, lower and upper case; percent-encoded.
  Secrets shorter than :data:`MIN_SECRET_LENGTH` (8) characters are ignored: they match ordinary text.
- **Token formats** (``TOKEN_PATTERNS``). Each pattern needs a token-shaped body, and bodies with fewer
  distinct characters than a random token would practically always have (``ghp_xxxx…``, ``AKIA0000…``) are
  taken for placeholders and skipped.
"""

from __future__ import annotations

import base64
import re
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from ci_swarm import git
from ci_swarm.errors import SecretFound

MIN_SECRET_LENGTH = 8

CONTENT = "content"
BINARY = "binary"
FILE_NAME = "file name"
MESSAGE = "commit message"


@dataclass(frozen=True)
class Finding:
    """Where a secret is: commit, file (redacted), line (1-based; 0 for a file name) and kind."""

    commit: str
    path: str
    line: int
    kind: str
    where: str = CONTENT

    def __str__(self) -> str:
        path = "".join(c if c.isprintable() else repr(c)[1:-1] for c in self.path)  # one line, always
        place = f"commit message line {self.line}" if self.where == MESSAGE else f"{path}:{self.line}"
        if self.where == FILE_NAME:
            place = f"file name {path}"
        return f"{self.commit[:12]} {place}: {self.kind}" + (" (binary file)" if self.where == BINARY else "")


@dataclass(frozen=True)
class TokenPattern:
    """A token format: what it is, the regex, and a check that rejects placeholders."""

    kind: str
    regex: bytes
    check: Callable[[bytes], bool]


def _distinct(minimum: int, skip: int = 0) -> Callable[[bytes], bool]:
    return lambda token: len(set(token[skip:])) >= minimum


def _aws_key_id(token: bytes) -> bool:
    # AWS's documentation key (AKIAIOSFODNN7EXAMPLE) and its kin are everywhere in docs and tests.
    return not token.endswith(b"EXAMPLE") and len(set(token[4:])) >= 6


_URL = re.compile(rb"//([^\s:/@]+):([^\s/@]+)@([A-Za-z0-9][A-Za-z0-9.-]*)")
_PLACEHOLDER_PASSWORDS = frozenset(
    b"password passwd pass pwd secret token changeme example redacted xxx user username".split()
)
_PLACEHOLDER_HOST = re.compile(rb"(^|\.)(example(\.com|\.org|\.net)?|invalid|test|host|hostname)$", re.I)


def _url_credentials(text: bytes) -> bool:
    """Real-looking ``user:password@host``: not a template (``${PW}``, ``{password}``, ``<pw>``, ``%s``,
    ``***``), not a placeholder word, not the user name again, not at a reserved example host."""
    match = _URL.search(text)
    if not match:
        return False
    user, password, host = match.groups()
    templated = any(c in password for c in b"${<*") or b"%s" in password or b"%(" in password
    placeholder = password.lower() in _PLACEHOLDER_PASSWORDS or len(set(password)) < 2 or password == user
    return not (templated or placeholder or _PLACEHOLDER_HOST.search(host))


_NOT_TOKEN_BEFORE = rb"(?<![A-Za-z0-9_])"

TOKEN_PATTERNS: tuple[TokenPattern, ...] = (
    # GitHub classic tokens: personal (ghp_), OAuth (gho_), user-to-server (ghu_), server-to-server and
    # the Actions GITHUB_TOKEN (ghs_), refresh (ghr_): the prefix and 36 (or more) base62 characters.
    TokenPattern("GitHub token", _NOT_TOKEN_BEFORE + rb"gh[pousr]_[A-Za-z0-9]{36,}", _distinct(10, 4)),
    # GitHub fine-grained personal access tokens: github_pat_ + 22 + _ + 59 characters.
    TokenPattern(
        "GitHub fine-grained token", _NOT_TOKEN_BEFORE + rb"github_pat_[A-Za-z0-9_]{60,}", _distinct(10, 11)
    ),
    # Anthropic API and admin keys: sk-ant-api03-…, sk-ant-admin01-…, long base64url bodies.
    TokenPattern("Anthropic API key", _NOT_TOKEN_BEFORE + rb"sk-ant-[A-Za-z0-9_-]{32,}", _distinct(10, 7)),
    # AWS access key ids, long-term (AKIA) and temporary (ASIA): exactly 16 more upper-case alphanumerics.
    TokenPattern(
        "AWS access key id", rb"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])", _aws_key_id
    ),
    # PEM / OpenSSH / PGP private keys: the BEGIN line followed (after optional headers such as
    # Proc-Type, real or escaped newlines) by a base64 body, so code that only mentions the header is fine.
    TokenPattern(
        "private key",
        rb"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:\s|\\[rn])+"
        rb"(?:[A-Za-z-]+: ?[^\n\\]*(?:\s|\\[rn])+)*[A-Za-z0-9+/=]{40}",
        lambda _: True,
    ),
    # Slack tokens: bot, user, app-level, refresh, workspace (xox[abprs]-) with their numeric ids.
    TokenPattern("Slack token", rb"(?<![A-Za-z0-9])xox[abprs]-[0-9]{6,}-[A-Za-z0-9-]{8,}", _distinct(8, 5)),
    # Credentials in a URL: scheme://user:password@host (see _url_credentials for what is skipped).
    TokenPattern(
        "URL credentials",
        rb"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/@]+:[^\s/@]+@[A-Za-z0-9][A-Za-z0-9.-]*",
        _url_credentials,
    ),
)


def secret_variants(secret: str) -> dict[bytes, str]:
    """The byte strings that give ``secret`` away, each with its kind; empty for a too-short secret."""
    if len(secret) < MIN_SECRET_LENGTH:
        return {}
    raw = secret.encode("utf-8", "surrogateescape")
    variants = {raw: "run secret"}
    for encoded in _base64_at_all_alignments(raw):
        variants.setdefault(encoded, "run secret (base64)")
    variants.setdefault(raw.hex().encode(), "run secret (hex)")
    variants.setdefault(raw.hex().upper().encode(), "run secret (hex)")
    variants.setdefault(quote(raw, safe="").encode(), "run secret (url-encoded)")
    return variants


def _base64_at_all_alignments(raw: bytes) -> Iterator[bytes]:
    """The base64 characters fixed by ``raw`` alone, for each of its three offsets in a longer stream."""
    for offset, skip in ((0, 0), (1, 2), (2, 3)):
        fixed = (4 * (offset + len(raw))) // 3
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            yield encode(b"\0" * offset + raw)[skip:fixed]


class Detector:
    """Finds secrets in bytes: the run's secrets (all variants) and :data:`TOKEN_PATTERNS`."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self._literal_kinds: dict[bytes, str] = {}
        for secret in secrets:
            for variant, kind in secret_variants(secret).items():
                self._literal_kinds.setdefault(variant, kind)
        literals = sorted(self._literal_kinds, key=len, reverse=True)
        self._literals = re.compile(b"|".join(re.escape(v) for v in literals)) if literals else None
        self._tokens = tuple((re.compile(p.regex), p) for p in TOKEN_PATTERNS)

    def __repr__(self) -> str:  # the compiled patterns hold the secrets: never show them
        return f"Detector({len(self._literal_kinds)} secret variants, {len(TOKEN_PATTERNS)} token patterns)"

    def spans(self, data: bytes) -> Iterator[tuple[int, int, str]]:
        """(start, end, kind) of every secret in ``data``."""
        if self._literals is not None:
            for match in self._literals.finditer(data):
                yield match.start(), match.end(), self._literal_kinds[match.group()]
        for regex, pattern in self._tokens:
            for match in regex.finditer(data):
                if pattern.check(match.group()):
                    yield match.start(), match.end(), pattern.kind

    def redact(self, data: bytes) -> bytes:
        """``data`` with every secret replaced by ``***``."""
        out, pos = [], 0
        for start, end, _ in sorted(self.spans(data)):
            if start >= pos:
                out += [data[pos:start], b"***"]
            pos = max(pos, end)
        return b"".join(out) + data[pos:]


# --- reading the range ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FilePatch:
    """One file of one commit's patch: what it adds."""

    commit: str
    path: bytes
    new_file: bool
    binary: bool
    new_oid: str
    added: tuple[tuple[int, bytes], ...]  # (line number in the new file, line)


@dataclass
class _Builder:
    commit: str
    path: bytes
    new_file: bool = False
    binary: bool = False
    new_oid: str = ""
    added: list[tuple[int, bytes]] = field(default_factory=list)

    def build(self) -> FilePatch:
        return FilePatch(self.commit, self.path, self.new_file, self.binary, self.new_oid, tuple(self.added))


_HUNK = re.compile(rb"^@@ -\d+(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def parse_log_patches(data: bytes) -> Iterator[FilePatch]:
    """Parse :func:`ci_swarm.git.log_patches` output. Hunks are read by their line counts, so an added line
    that looks like a header (``+++ x``, ``diff --git``) is content, never structure."""
    lines = data.split(b"\n")
    commit, current, i = "", None, 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith(b"\x01"):
            if current:
                yield current.build()
            commit, current = line[1:].decode("ascii", "replace"), None
        elif line.startswith(b"diff --git "):
            if current:
                yield current.build()
            current = _Builder(commit, header_path(line[len(b"diff --git ") :]))
        elif current is None:
            continue
        elif line.startswith(b"new file mode "):
            current.new_file = True
        elif line.startswith(b"index "):
            current.new_oid = line.split()[1].split(b"..")[-1].decode("ascii", "replace")
        elif line.startswith(b"Binary files "):
            current.binary = True
        elif hunk := _HUNK.match(line):
            i = _read_hunk(lines, i, hunk, current.added)
    if current:
        yield current.build()


def _read_hunk(lines: list[bytes], i: int, hunk: re.Match[bytes], added: list[tuple[int, bytes]]) -> int:
    old_count = int(hunk.group(1) or b"1")
    number, new_count = int(hunk.group(2)), int(hunk.group(3) or b"1")
    while (old_count > 0 or new_count > 0) and i < len(lines):
        line, tag = lines[i], lines[i][:1]
        if tag == b"+":
            added.append((number, line[1:]))
            number, new_count = number + 1, new_count - 1
        elif tag == b"-":
            old_count -= 1
        elif tag == b" ":
            number, old_count, new_count = number + 1, old_count - 1, new_count - 1
        elif tag != b"\\":
            break
        i += 1
    return i


def header_path(rest: bytes) -> bytes:
    """The path in a ``diff --git a/<p> b/<p>`` header (no renames: both sides are the same path, so the
    split is unambiguous even with spaces), C-unquoted when git quoted it."""
    if rest.startswith(b'"'):
        n = (len(rest) - 9) // 2
        quoted = rest[3 : 3 + n]
        if rest == b'"a/' + quoted + b'" "b/' + quoted + b'"':
            return c_unquote(quoted)
    else:
        n = (len(rest) - 5) // 2
        plain = rest[2 : 2 + n]
        if rest == b"a/" + plain + b" b/" + plain:
            return plain
    return rest


_ESCAPES = {b"a": 7, b"b": 8, b"t": 9, b"n": 10, b"v": 11, b"f": 12, b"r": 13, b'"': 34, b"\\": 92}


def c_unquote(text: bytes) -> bytes:
    """Undo git's C-style path quoting (``\\t``, ``\\"``, ``\\\\``, ``\\ooo`` octal)."""
    out, i = bytearray(), 0
    while i < len(text):
        c = text[i : i + 1]
        if c == b"\\" and i + 1 < len(text):
            nxt = text[i + 1 : i + 2]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            if text[i + 1 : i + 4].isdigit():
                out.append(int(text[i + 1 : i + 4], 8) & 0xFF)
                i += 4
                continue
        out += c
        i += 1
    return bytes(out)


# --- scanning ------------------------------------------------------------------------------------


def scan_range(repo: Path, base: str | None, tip: str, secrets: Sequence[str]) -> tuple[Finding, ...]:
    """Every secret that pushing ``tip`` to a remote holding ``base`` would carry (``base`` None: all of
    ``tip``'s history). Oldest commit first; repeats of a place already reported are left out."""
    detector = Detector(secrets)
    findings = list(_scan_messages(detector, git.log_messages(repo, base, tip, secrets)))
    binaries: list[tuple[str, str, str]] = []
    for patch in parse_log_patches(git.log_patches(repo, base, tip, secrets)):
        path = _display(detector, patch.path)
        if patch.new_file:
            findings += [
                Finding(patch.commit, path, 0, k, FILE_NAME) for _, _, k in detector.spans(patch.path)
            ]
        if patch.binary and patch.new_oid.strip("0"):
            binaries.append((patch.commit, path, patch.new_oid))
        findings += _scan_lines(detector, patch.commit, path, patch.added)
    blobs = git.read_blobs(repo, list(dict.fromkeys(oid for _, _, oid in binaries)), secrets)
    for commit, path, oid in binaries:
        findings += _scan_blob(detector, commit, path, blobs.get(oid, b""))
    return _unique(findings)


def ensure_no_secrets(repo: Path, base: str | None, tip: str, secrets: Sequence[str]) -> None:
    """Raise SecretFound (naming places, never values) if pushing ``base..tip`` would carry a secret."""
    findings = scan_range(repo, base, tip, secrets)
    if findings:
        shown = "; ".join(str(f) for f in findings[:5])
        more = f"; and {len(findings) - 5} more" if len(findings) > 5 else ""
        raise SecretFound(
            f"refusing to push: {len(findings)} secret(s) in the commits to push: {shown}{more}", findings
        )


def _display(detector: Detector, path: bytes) -> str:
    return detector.redact(path).decode("utf-8", "backslashreplace")


def _scan_messages(detector: Detector, data: bytes) -> Iterator[Finding]:
    for record in data.split(b"\0"):
        commit, _, message = record.strip(b"\n").partition(b"\n")
        if commit:
            numbered = list(enumerate(message.split(b"\n"), start=1))
            for finding in _scan_lines(detector, commit.decode("ascii", "replace"), "", numbered):
                yield Finding(finding.commit, "", finding.line, finding.kind, MESSAGE)


def _scan_lines(
    detector: Detector, commit: str, path: str, lines: Sequence[tuple[int, bytes]]
) -> list[Finding]:
    """Scan lines as one text (a private key spans lines), mapping each hit back to its line number."""
    if not lines:
        return []
    starts, pos = [], 0
    for _, line in lines:
        starts.append(pos)
        pos += len(line) + 1
    text = b"\n".join(line for _, line in lines)
    return [
        Finding(commit, path, lines[bisect_right(starts, start) - 1][0], kind)
        for start, _, kind in detector.spans(text)
    ]


def _scan_blob(detector: Detector, commit: str, path: str, data: bytes) -> list[Finding]:
    return [
        Finding(commit, path, data.count(b"\n", 0, start) + 1, kind, BINARY)
        for start, _, kind in detector.spans(data)
    ]


def _unique(findings: Sequence[Finding]) -> tuple[Finding, ...]:
    seen: dict[tuple[str, str, int, str, str], Finding] = {}
    for finding in findings:
        commit = finding.commit if finding.where == MESSAGE else ""
        seen.setdefault((commit, finding.path, finding.line, finding.kind, finding.where), finding)
    return tuple(seen.values())
