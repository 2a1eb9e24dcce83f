"""The fake's HTTP layer: REST dispatch, auth, pagination, injected faults, traffic log, git smart HTTP.

One ``ThreadingHTTPServer`` on the loopback interface. ``/<owner>/<name>.git/…`` goes to ``git http-backend``
(CGI) after checking the ``Authorization`` header exactly as github.com does for a token (basic
``x-access-token:<token>``); everything else is the REST API, answered under the store's lock.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ci_swarm import git
from ci_swarm.testing.fake_github import api
from ci_swarm.testing.fake_github.store import BOT_LOGIN, SCOPES, Repo, Store, Token

SECONDARY_RATE_LIMIT = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID {request_id}."
)
_DISCONNECTS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
_COUNT_LOCK = threading.Lock()
_GIT_PATH = re.compile(
    r"^/(?P<owner>[^/]+)/(?P<name>[^/]+?)\.git/(?P<rest>info/refs|git-upload-pack|git-receive-pack)$"
)


@dataclass(frozen=True)
class Exchange:
    """One API request and its response, as sent over the wire."""

    method: str
    path: str
    query: dict[str, list[str]]
    request_headers: dict[str, str]
    request_body: bytes
    status: int
    response_headers: dict[str, str]
    response_body: bytes
    injected: bool = False

    def json(self) -> Any:
        return json.loads(self.response_body) if self.response_body else None


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    body: Any
    headers: dict[str, str]
    times: int


class FakeGitHub:
    """A loopback GitHub: REST API + git smart HTTP over real bare repositories.

    Use as a context manager. Tokens are registered with :meth:`add_token`; with none registered any
    non-empty token is accepted as ``github-actions[bot]`` with write access (handy for trying things).
    """

    def __init__(self, root: Path | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="fake-github-")) if root is None else root
        self.store = Store()
        self.traffic: list[Exchange] = []
        self.git_requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self._faults: list[Fault] = []
        self._log_lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = _Server((host, port), handler)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def hung_up(self) -> int:
        """How many connections the client reset or closed while the fake read or answered a request."""
        return self._server.hung_up

    @property
    def settings(self) -> Any:
        return self.store.settings

    def start(self) -> FakeGitHub:
        # the poll interval bounds how long stop() waits for the serving loop to notice
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.01,), name="fake-github", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- setup ------------------------------------------------------------------------------

    def add_repo(self, full_name: str, source: Path | None = None, default_branch: str | None = None) -> Path:
        """Serve ``source``'s history as ``owner/name`` from a bare copy; returns the bare repo's path."""
        owner, _, name = full_name.partition("/")
        bare = self.root / owner / f"{name}.git"
        bare.parent.mkdir(parents=True, exist_ok=True)
        if source is not None:
            git.run(self.root, "clone", "--quiet", "--bare", "--no-local", str(source.resolve()), str(bare))
        else:
            git.run(self.root, "init", "--quiet", "--bare", str(bare))
        branch = default_branch or git.out(bare, "symbolic-ref", "--short", "HEAD")
        git.run(bare, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
        with self.store.lock:
            self.store.user(owner)
            self.store.repos[full_name.lower()] = Repo(
                owner, name, self.store.next_id(), bare, branch, time.time()
            )
        return bare

    def add_fork(self, full_name: str, parent: str) -> Path:
        """Fork ``parent`` (a repository already served) as ``full_name``: a bare copy of its branches,
        ``fork: true`` with ``parent``/``source`` in its JSON. A pull request into ``parent`` from this fork
        names its head ``owner:branch``. Only the fork's owner may push to it; returns the bare repo's path.
        """
        upstream = self.repo(parent)
        path = self.add_repo(full_name, upstream.path, upstream.default_branch)
        with self.store.lock:
            self.repo(full_name).parent = upstream.full_name
        return path

    def add_token(
        self, value: str, login: str = BOT_LOGIN, *, actions: bool = True, **permissions: str
    ) -> Token:
        """Register a token; ``permissions`` per scope (contents, issues, pull_requests): write|read|none."""
        unknown = set(permissions) - set(SCOPES)
        if unknown:
            raise ValueError(f"unknown token scopes: {sorted(unknown)}")
        with self.store.lock:
            self.store.user(login)
            token = Token(value, login, {**dict.fromkeys(SCOPES, "write"), **permissions}, actions)
            self.store.tokens[value] = token
        return token

    def add_user(
        self, login: str, role: str = "none", *, member: str = "", contributor: bool = False
    ) -> None:
        """A user with ``role`` on every repository. ``member``: ``public`` or ``private`` member of the
        organisation (their comments say ``MEMBER``, or ``CONTRIBUTOR``/``NONE`` when private, whatever
        ``role`` is), ``contributor``: has commits (``CONTRIBUTOR`` when nothing closer applies)."""
        if member not in ("", "public", "private"):
            raise ValueError(f"member must be public, private or empty, got {member!r}")
        with self.store.lock:
            user = self.store.user(login, role=role)
            user.member, user.contributor = member, contributor

    def repo(self, full_name: str) -> Repo:
        found = self.store.repos.get(full_name.lower())
        if found is None:
            raise KeyError(full_name)
        return found

    # --- faults -----------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests matching ``method`` and the ``path`` regex with this."""
        if body is None:
            body = {"message": "Server Error", "documentation_url": api.DOCS, "status": str(status)}
        with self._log_lock:
            self._faults.append(Fault(method.upper(), re.compile(path), status, body, headers or {}, times))

    def secondary_rate_limit(self, method: str, path: str, times: int = 1, retry_after: int = 0) -> None:
        message = SECONDARY_RATE_LIMIT.format(request_id=uuid.uuid4().hex[:20].upper())
        docs = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits"
        body = {"message": message, "documentation_url": docs, "status": "403"}
        self.fail(method, path, 403, body, {"Retry-After": str(retry_after)}, times)

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self._log_lock:
            for fault in self._faults:
                if fault.method == method and fault.pattern.search(path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def record(self, exchange: Exchange) -> None:
        with self._log_lock:
            self.traffic.append(exchange)

    def token(self, value: str | None) -> Token | bool | None:
        """The token's record; False when one was sent but is unknown."""
        if not value:
            return None
        known = self.store.tokens.get(value)
        if known is not None:
            return known
        if not self.store.tokens:
            return Token(value, BOT_LOGIN)
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hung_up = 0  # connections the client reset or closed under a request

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-request (or a connection cut at shutdown) is no error of the fake's:
        counted, no traceback; anything else is printed as usual."""
        if isinstance(sys.exc_info()[1], _DISCONNECTS):
            with _COUNT_LOCK:
                self.hung_up += 1
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGitHub
    protocol_version = "HTTP/1.1"
    server_version = "GitHub.com"
    sys_version = ""
    # One buffered write per response (flushed by http.server after each request) sent at once: with
    # Nagle on, the body waited for the client's delayed ACK of the headers, ~40 ms per request.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # --- plumbing -----------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _dispatch(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        body = self._read_body()
        match = _GIT_PATH.match(url.path)
        if match:
            self._git(match, url.query, body)
        else:
            self._api(url.path, url.query, body)

    # --- REST -----------------------------------------------------------------------------------

    def _api(self, path: str, query: str, body: bytes) -> None:
        base = f"http://{self.headers.get('Host') or self.fake.base_url.split('://', 1)[1]}"
        params = urllib.parse.parse_qs(query)
        injected = False
        fault = self.fake.take_fault(self.command, path)
        if fault is not None:
            status, payload, headers, injected = fault.status, fault.body, dict(fault.headers), True
        else:
            status, payload, headers = self._answer(base, path, params, body)
        data = b"" if payload is None else json.dumps(payload).encode()
        headers = {**_standard_headers(), **headers}
        if payload is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        self.fake.record(
            Exchange(
                self.command, path, params, dict(self.headers.items()), body, status, headers, data, injected
            )
        )
        self._send(status, data, headers)

    def _answer(
        self, base: str, path: str, params: dict[str, list[str]], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        found = api.match(self.command, path)
        if not isinstance(found, tuple):
            docs = api.DOCS
            status = 404 if found is None else 405
            message = "Not Found" if found is None else "Method Not Allowed"
            return status, api.error_body(status, message, docs), {}
        route, path_params = found
        try:
            token = self._auth(route)
            payload = json.loads(body) if body else None
            call = api.Call(
                self.fake.store,
                base,
                self.command,
                {k: urllib.parse.unquote(v) for k, v in path_params.items()},
                {k: v[-1] for k, v in params.items()},
                payload,
                token,
                route.docs,
            )
            with self.fake.store.lock:
                reply = route.handler(call)
                if reply.paginate:
                    return _paginate(base, path, params, reply)
                return reply.status, reply.body, reply.headers
        except api.ApiError as err:
            return err.status, err.body, err.headers
        except json.JSONDecodeError:
            return 400, api.error_body(400, "Problems parsing JSON", route.docs), {}

    def _auth(self, route: api.Route) -> Token | None:
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        token = self.fake.token(value.strip() if scheme.lower() in ("token", "bearer") else None)
        if token is False:
            raise api.ApiError(401, api.error_body(401, "Bad credentials", api.DOCS))
        assert token is not True
        if route.scope is None:
            if token is None and not self.fake.store.settings.anonymous_reads:
                raise api.ApiError(401, api.error_body(401, "Requires authentication", route.docs))
            return token
        if token is None:
            raise api.ApiError(401, api.error_body(401, "Requires authentication", route.docs))
        if token.permissions.get(route.scope) != "write":
            raise api.forbidden_integration(route.docs)
        return token

    # --- git smart HTTP -----------------------------------------------------------------------

    def _git(self, match: re.Match[str], query: str, body: bytes) -> None:
        repo = self.fake.store.repo(match["owner"], match["name"])
        service = urllib.parse.parse_qs(query).get("service", [""])[0]
        writing = match["rest"] == "git-receive-pack" or service == "git-receive-pack"
        status, message, login = self._git_auth(writing)
        if repo is None:
            status, message = 404, "Repository not found."
        if status == 200 and writing and repo is not None and not _may_push(repo, login):
            status, message = 403, f"Permission to {repo.full_name}.git denied to {login}."
        if status != 200 or repo is None or login is None:
            headers = {"Content-Type": "text/plain"}
            if status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="GitHub"'
            self.fake.git_requests.append((self.command, self.path, status))
            self._send(status, message.encode() + b"\n", headers)
            return
        env = {
            "GIT_PROJECT_ROOT": str(self.fake.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{repo.owner}/{repo.name}.git/{match['rest']}",
            "REQUEST_METHOD": self.command,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": login,
            "REMOTE_ADDR": self.client_address[0],
        }
        for header in ("Content-Encoding", "Git-Protocol"):
            if self.headers.get(header):
                env["HTTP_" + header.upper().replace("-", "_")] = self.headers[header]
        result = git.run(self.fake.root, "http-backend", input=body, env=env, ok=tuple(range(256)))
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        headers = {}
        code = 200
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                code = int(value.split()[0])
            elif key:
                headers[key] = value.strip()
        self.fake.git_requests.append((self.command, self.path, code))
        self._send(code, payload, headers)

    def _git_auth(self, writing: bool) -> tuple[int, str, str | None]:
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        secret = None
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except ValueError:
                return 400, "Bad Authorization header.", None
            secret = password or user
        token = self.fake.token(secret)
        if token is False:
            return 401, "Invalid username or token. Password authentication is not supported.", None
        assert token is not True
        if token is None:
            return (401, "Authentication required.", None) if writing else (200, "", "anonymous")
        if writing and token.permissions.get("contents") != "write":
            return 403, "Write access to repository not granted.", None
        return 200, "", token.login


def _may_push(repo: Repo, login: str | None) -> bool:
    """A fork takes pushes from its owner only (a base repository's token cannot write to it)."""
    return repo.parent is None or (login or "").lower() == repo.owner.lower()


def _standard_headers() -> dict[str, str]:
    return {
        "X-GitHub-Media-Type": "github.v3; format=json",
        "X-GitHub-Api-Version-Selected": "2022-11-28",
        "X-RateLimit-Limit": "5000",
        "X-RateLimit-Remaining": "4999",
        "X-RateLimit-Reset": "4102444800",
        "X-RateLimit-Resource": "core",
        "X-GitHub-Request-Id": uuid.uuid4().hex[:16].upper(),
    }


def _paginate(
    base: str, path: str, params: dict[str, list[str]], reply: api.Reply
) -> tuple[int, Any, dict[str, str]]:
    rows = list(reply.body)
    try:
        per_page = min(max(int(params.get("per_page", ["30"])[-1]), 1), 100)
        page = max(int(params.get("page", ["1"])[-1]), 1)
    except ValueError:
        per_page, page = 30, 1
    last = max((len(rows) + per_page - 1) // per_page, 1)
    links = []

    def url(n: int) -> str:
        query = {k: v[-1] for k, v in params.items() if k != "page"}
        query["page"] = str(n)
        return f"<{base}{path}?{urllib.parse.urlencode(query)}>"

    if page < last:
        links += [f'{url(page + 1)}; rel="next"', f'{url(last)}; rel="last"']
    if page > 1:
        links += [f'{url(1)}; rel="first"', f'{url(page - 1)}; rel="prev"']
    headers = dict(reply.headers)
    if links:
        headers["Link"] = ", ".join(links)
    return reply.status, rows[(page - 1) * per_page : page * per_page], headers
