"""``python -m ci_swarm.testing.fake_github --port 0 --repo owner/name=PATH [--user login=permission ...]
[--member login=permission ...] [--private-member login=permission ...] [--fork someone/name=owner/name ...]``

Prints the base URL on the first line of stdout, then serves until stopped (SIGINT / SIGTERM).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from ci_swarm.testing.fake_github.server import FakeGitHub


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ci_swarm.testing.fake_github", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--root", type=Path, help="where the bare repositories live (default: a temp dir)")
    parser.add_argument("--repo", type=_pair, action="append", default=[], metavar="OWNER/NAME=PATH")
    pairs = {
        "--fork": ("OWNER/NAME=PARENT", "a fork of a --repo"),
        "--user": ("LOGIN=PERMISSION", "a user with that permission on every repository"),
        "--member": ("LOGIN=PERMISSION", "a public member of the organisation (author_association MEMBER)"),
        "--private-member": ("LOGIN=PERMISSION", "a private member (author_association CONTRIBUTOR)"),
    }
    for flag, (metavar, text) in pairs.items():
        parser.add_argument(flag, type=_pair, action="append", default=[], metavar=metavar, help=text)
    parser.add_argument(
        "--token", action="append", default=[], metavar="TOKEN[=LOGIN]", help="accept only these tokens"
    )
    parser.add_argument("--no-actions-prs", action="store_true", help="Actions may not create pull requests")
    parser.add_argument(
        "--head-sha-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="show a pushed commit as a pull request's head.sha only after this long (as github.com lags)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fake = FakeGitHub(args.root, args.host, args.port)
    for full_name, path in args.repo:
        fake.add_repo(full_name, Path(path))
    for full_name, parent in args.fork:
        fake.add_fork(full_name, parent)
    for login, role in args.user:
        fake.add_user(login, role)
    for login, role in args.member:
        fake.add_user(login, role, member="public")
    for login, role in args.private_member:
        fake.add_user(login, role, member="private")
    for spec in args.token:
        value, _, login = spec.partition("=")
        if login:
            fake.add_token(value, login)
        else:
            fake.add_token(value)
    fake.settings.actions_can_create_prs = not args.no_actions_prs
    fake.settings.head_sha_delay = args.head_sha_delay
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with fake:
        print(fake.base_url, flush=True)
        for full_name, _ in args.repo:
            print(f"{full_name}: {fake.base_url}/{full_name}.git", file=sys.stderr, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
