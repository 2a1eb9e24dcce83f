"""Tree paths checked by git's own rules, so nothing an agent names can land in, or as, a ``.git``.

git refuses some paths when it adds them to an index (``verify_path`` in ``read-cache.c``): empty, ``.``
and ``..`` components, and a ``.git`` component in any case. With ``core.protectNTFS`` (on by default) and
``core.protectHFS`` (on by default on macOS) it also refuses the spellings those filesystems treat as
``.git``: ``git~1`` (the 8.3 short name), trailing dots and spaces (``.git.``, ``.git ``), an alternate data
stream (``.git::$INDEX_ALLOCATION``), and ``.git`` with code points HFS+ ignores (U+200C, U+FEFF …)
inside. A *symlink* may not be named ``.gitmodules`` in any of those spellings either. This module ports
those checks (``is_ntfs_dotgit`` / ``is_ntfs_dot_generic`` in ``path.c``, ``is_hfs_dotgit`` in ``utf8.c``)
with both protections on, whatever the platform, because a tree written on Linux is checked out on
Windows and macOS runners.

:func:`check_tree_path` is stricter than git where git's answer depends on the platform or is
surprising, and says so in its refusal:

- a backslash is refused: git on Windows splits ``a\\b`` into ``a/b``, git elsewhere keeps one file
  named ``a\\b``; a path must not mean two things;
- control characters (C0, DEL, C1) and NUL are refused;
- absolute paths (``/x``, ``C:x``, ``//server``) and any ``..`` component are refused;
- ``.`` components and repeated or trailing slashes are removed (``./a//b/`` is ``a/b``) rather than
  refused.
"""

from __future__ import annotations

import re
import unicodedata

from ci_swarm.errors import PathEscapeError

# Code points HFS+ ignores when comparing names (git's next_hfs_char).
HFS_IGNORED = frozenset(
    {
        0x200C,  # ZERO WIDTH NON-JOINER
        0x200D,  # ZERO WIDTH JOINER
        0x200E,  # LEFT-TO-RIGHT MARK
        0x200F,  # RIGHT-TO-LEFT MARK
        0x202A,  # LEFT-TO-RIGHT EMBEDDING
        0x202B,  # RIGHT-TO-LEFT EMBEDDING
        0x202C,  # POP DIRECTIONAL FORMATTING
        0x202D,  # LEFT-TO-RIGHT OVERRIDE
        0x202E,  # RIGHT-TO-LEFT OVERRIDE
        0x206A,  # INHIBIT SYMMETRIC SWAPPING
        0x206B,  # ACTIVATE SYMMETRIC SWAPPING
        0x206C,  # INHIBIT ARABIC FORM SHAPING
        0x206D,  # ACTIVATE ARABIC FORM SHAPING
        0x206E,  # NATIONAL DIGIT SHAPES
        0x206F,  # NOMINAL DIGIT SHAPES
        0xFEFF,  # ZERO WIDTH NO-BREAK SPACE
    }
)

_DRIVE = re.compile(r"^[A-Za-z]:")


def is_git_dir_name(component: str) -> bool:
    """Whether git (with NTFS and HFS+ protection) treats this path component as ``.git``."""
    return _is_dotgit_exact(component) or _is_ntfs_dotgit(component) or _is_hfs_dot(component, "git")


def is_gitmodules_name(component: str) -> bool:
    """Whether git refuses a *symlink* with this name: ``.gitmodules`` in any case, NTFS or HFS+ spelling."""
    return (
        component.lower() == ".gitmodules"
        or _is_ntfs_dot_generic(component, "gitmodules", "gi7eba")
        or _is_hfs_dot(component, "gitmodules")
    )


def check_tree_path(path: str, *, symlink: bool = False) -> str:
    """The normalised POSIX form of a path inside a tree; PathEscapeError (naming it) if it is refused.

    ``symlink`` applies git's extra rule for symlinks: the last component may not be ``.gitmodules``.
    """
    reason = _refusal(path)
    if reason:
        raise PathEscapeError(f"path {path!r} refused: {reason}")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise PathEscapeError(f"path {path!r} refused: it names no file")
    for part in parts:
        if part == "..":
            raise PathEscapeError(f"path {path!r} refused: '..' components are not allowed")
        if is_git_dir_name(part):
            raise PathEscapeError(f"path {path!r} refused: component {part!r} is .git to git")
    if symlink and any(is_gitmodules_name(p) for p in parts):
        raise PathEscapeError(f"path {path!r} refused: a symlink may not be .gitmodules")
    return "/".join(parts)


def _refusal(path: str) -> str:
    if not path:
        return "empty path"
    if "\0" in path:
        return "NUL character"
    if any(unicodedata.category(c) == "Cc" for c in path):
        return "control character"
    if any(_is_surrogate(c) for c in path):
        return "not valid UTF-8"
    if "\\" in path:
        return "backslash (a directory separator on Windows, a file name character elsewhere)"
    if path.startswith("/") or _DRIVE.match(path):
        return "absolute path; tree paths are relative"
    return ""


# --- ports of git's checks ---------------------------------------------------------------------


def _is_dotgit_exact(component: str) -> bool:
    # verify_dotfile: ".git" in any case, always refused.
    return component.lower() == ".git"


def _is_ntfs_dotgit(name: str) -> bool:
    """git's is_ntfs_dotgit: ``.git`` or ``git~1`` (any case), then only dots and spaces up to the end of
    the component, a ``:`` (alternate data stream) or a directory separator."""
    lower = name.lower()
    if lower.startswith(".git"):
        rest = name[4:]
    elif lower.startswith("git~1"):
        rest = name[5:]
    else:
        return False
    return _only_dots_and_spaces_until_end(rest, separators="/\\:")


def _is_ntfs_dot_generic(name: str, needle: str, shortname_prefix: str) -> bool:
    """git's is_ntfs_dot_generic, for ``.gitmodules`` and friends (symlink rules)."""
    lower = name.lower()
    if lower.startswith("." + needle):
        return _only_dots_and_spaces_until_end(name[len(needle) + 1 :], separators=":")
    # Regular 8.3 short name: the first six characters, then ~1 … ~4.
    if lower.startswith(needle[:6]) and len(name) > 7 and name[6] == "~" and name[7] in "1234":
        return _only_dots_and_spaces_until_end(name[8:], separators=":")
    return _is_ntfs_fallback_shortname(name, shortname_prefix)


def _is_ntfs_fallback_shortname(name: str, prefix: str) -> bool:
    # The fall-back 8.3 name: up to six characters of a hashed prefix, "~", digits, eight characters in all.
    i = 0
    saw_tilde = False
    while i < 8:
        if i >= len(name):
            return False
        c = name[i]
        if saw_tilde:
            if not "0" <= c <= "9":
                return False
        elif c == "~":
            i += 1
            if i >= len(name) or not "1" <= name[i] <= "9":
                return False
            saw_tilde = True
        elif i >= 6 or ord(c) > 127 or c.lower() != prefix[i]:
            return False
        i += 1
    return _only_dots_and_spaces_until_end(name[8:], separators=":")


def _only_dots_and_spaces_until_end(rest: str, separators: str) -> bool:
    for c in rest:
        if c in separators:
            return True
        if c not in ". ":
            return False
    return True


def _is_hfs_dot(name: str, needle: str) -> bool:
    """git's is_hfs_dot_generic: ``.`` + needle (ASCII, any case) once HFS+-ignored code points are
    dropped, then the end of the component. Like git, an undecodable byte (a lone surrogate here) ends the
    name: it fails inside the needle and matches after it."""
    chars = iter(c for c in name if ord(c) not in HFS_IGNORED)
    for expected in "." + needle:
        c = next(chars, "")
        if not c or _is_surrogate(c) or ord(c) > 127 or c.lower() != expected:
            return False
    return True if (c := next(chars, "")) == "" else _is_surrogate(c)


def _is_surrogate(c: str) -> bool:
    return 0xD800 <= ord(c) <= 0xDFFF
