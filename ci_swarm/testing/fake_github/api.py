"""The REST endpoints, with GitHub's rules, status codes and error bodies.

Each route is (method, path pattern, scope, docs anchor, handler). A handler gets a :class:`Call` and
returns a :class:`Reply` or raises :class:`ApiError`; list replies are paginated by the HTTP layer.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ci_swarm import git
from ci_swarm.errors import GitError
from ci_swarm.testing.fake_github import objects, pulls
from ci_swarm.testing.fake_github.store import (
    REACTIONS,
    ROLE_PERMISSION,
    Comment,
    Issue,
    Label,
    Pull,
    Reaction,
    Repo,
    Review,
    ReviewComment,
    Store,
    Token,
)

Json = dict[str, Any]
DOCS = "https://docs.github.com/rest"
ACTIONS_MAY_NOT_CREATE_PRS = "GitHub Actions is not permitted to create or approve pull requests."


class ApiError(Exception):
    def __init__(self, status: int, body: Json, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {body.get('message')}")
        self.status = status
        self.body = body
        self.headers = headers or {}


@dataclass
class Call:
    store: Store
    base: str  # scheme://host[:port] from the request's Host header
    method: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    token: Token | None
    docs: str

    @property
    def login(self) -> str:
        assert self.token is not None
        return self.token.login

    def repo(self) -> Repo:
        found = self.store.repo(self.params["owner"], self.params["repo"])
        if found is None:
            raise not_found(self.docs)
        return found

    def field(self, name: str, kind: type, *, required: bool = False) -> Any:
        data = self.body if isinstance(self.body, dict) else {}
        value = data.get(name)
        if value is None:
            if required:
                raise ApiError(422, _invalid(f'"{name}" wasn\'t supplied.', self.docs))
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ApiError(
                422, _invalid(f"For 'properties/{name}', {value!r} is not a {kind.__name__}.", self.docs)
            )
        return value


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    paginate: bool = False


def error_body(status: int, message: str, docs: str, **extra: Any) -> Json:
    return {"message": message, **extra, "documentation_url": docs, "status": str(status)}


def not_found(docs: str) -> ApiError:
    return ApiError(404, error_body(404, "Not Found", docs))


def _invalid(message: str, docs: str) -> Json:
    return error_body(422, "Invalid request.\n\n" + message, docs)


def validation_failed(docs: str, *errors: Json) -> ApiError:
    return ApiError(422, error_body(422, "Validation Failed", docs, errors=list(errors)))


def pr_invalid(docs: str, **error: str) -> ApiError:
    return validation_failed(docs, {"resource": "PullRequest", **error})


def thread_invalid(docs: str, **error: str) -> ApiError:
    return validation_failed(docs, {"resource": "PullRequestReviewComment", **error})


def unprocessable(docs: str, sentence: str) -> ApiError:
    return ApiError(422, error_body(422, "Unprocessable Entity", docs, errors=[sentence]))


def forbidden_integration(docs: str) -> ApiError:
    return ApiError(403, error_body(403, "Resource not accessible by integration", docs))


# --- repositories, branches, refs, users ------------------------------------------------------


def get_authenticated(call: Call) -> Reply:
    if call.token is None:
        raise ApiError(401, error_body(401, "Requires authentication", call.docs))
    return Reply(body=objects.public_user(call.base, call.store.user(call.login)))


def get_repo(call: Call) -> Reply:
    return Reply(body=objects.repo(call.base, call.store, call.repo()))


def list_branches(call: Call) -> Reply:
    r = call.repo()
    rows = [
        {**objects.branch(call.base, r, name, sha, full=False), "protected": False}
        for name, sha in objects.bare_branches(r.path)
    ]
    return Reply(body=rows, paginate=True)


def get_branch(call: Call) -> Reply:
    r = call.repo()
    name = call.params["branch"]
    sha = objects.branch_sha(r, name)
    if sha is None:
        raise ApiError(404, error_body(404, "Branch not found", call.docs))
    return Reply(body=objects.branch(call.base, r, name, sha))


def get_ref(call: Call) -> Reply:
    r = call.repo()
    ref = call.params["ref"]
    sha = git.try_rev_parse(r.path, f"refs/{ref}") if ref.startswith(("heads/", "tags/")) else None
    if sha is None:
        raise not_found(call.docs)
    return Reply(body=objects.git_ref(call.base, r, f"refs/{ref}", sha))


def collaborator_permission(call: Call) -> Reply:
    r = call.repo()
    login = call.params["username"]
    known = call.store.users.get(login)
    if known is None or known.type == "Bot":  # github.com has no permission to tell for a bot either
        raise ApiError(404, error_body(404, f"{login} is not a user", call.docs))
    role = "admin" if login == r.owner else known.role
    body = {
        "permission": ROLE_PERMISSION.get(role, "none"),
        "role_name": role if role in ROLE_PERMISSION else "none",
        "user": {**objects.user(call.base, known), "role_name": role},
    }
    return Reply(body=body)


# --- issues, comments, labels, reactions ------------------------------------------------------


def _issue(call: Call, r: Repo) -> Issue:
    number = int(call.params["issue_number"])
    found = r.issues.get(number)
    if found is None:
        raise not_found(call.docs)
    return found


def create_issue(call: Call) -> Reply:
    r = call.repo()
    title = call.field("title", str, required=True)
    now = time.time()
    it = Issue(next(r.numbers), title, call.field("body", str), call.login, now, now)
    for name in call.field("labels", list) or []:
        _label(call, r, str(name))
        it.labels.append(str(name))
    r.issues[it.number] = it
    return Reply(201, objects.issue(call.base, call.store, r, it))


def get_issue(call: Call) -> Reply:
    r = call.repo()
    return Reply(body=objects.issue(call.base, call.store, r, _issue(call, r)))


def list_comments(call: Call) -> Reply:
    r = call.repo()
    it = _issue(call, r)
    rows = [objects.comment(call.base, call.store, r, c) for c in r.comments.values() if c.issue == it.number]
    return Reply(body=rows, paginate=True)


def create_comment(call: Call) -> Reply:
    r = call.repo()
    it = _issue(call, r)
    body = call.field("body", str, required=True)
    now = time.time()
    c = Comment(call.store.next_id(), it.number, call.login, body, now, now)
    r.comments[c.id] = c
    it.updated_at = now
    return Reply(201, objects.comment(call.base, call.store, r, c))


def _comment(call: Call, r: Repo) -> Comment:
    found = r.comments.get(int(call.params["comment_id"]))
    if found is None:
        raise not_found(call.docs)
    return found


def get_comment(call: Call) -> Reply:
    r = call.repo()
    return Reply(body=objects.comment(call.base, call.store, r, _comment(call, r)))


def update_comment(call: Call) -> Reply:
    r = call.repo()
    c = _comment(call, r)
    if c.user != call.login and call.store.user(call.login).role not in ("admin", "maintain", "write"):
        raise forbidden_integration(call.docs)
    c.body = call.field("body", str, required=True)
    c.updated_at = time.time()
    return Reply(body=objects.comment(call.base, call.store, r, c))


def _label(call: Call, r: Repo, name: str) -> Label:
    if name not in r.labels:
        r.labels[name] = Label(call.store.next_id(), name)
    return r.labels[name]


def add_labels(call: Call) -> Reply:
    r = call.repo()
    it = _issue(call, r)
    names = call.body.get("labels") if isinstance(call.body, dict) else call.body
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ApiError(422, _invalid("labels must be a list of strings", call.docs))
    for name in names:
        _label(call, r, name)
        if name not in it.labels:
            it.labels.append(name)
    return Reply(body=[objects.label(call.base, r, r.labels[n]) for n in it.labels])


def list_labels(call: Call) -> Reply:
    r = call.repo()
    it = _issue(call, r)
    return Reply(body=[objects.label(call.base, r, r.labels[n]) for n in it.labels], paginate=True)


def remove_label(call: Call) -> Reply:
    r = call.repo()
    it = _issue(call, r)
    name = call.params["name"]
    if name not in it.labels:
        raise ApiError(404, error_body(404, "Label does not exist", call.docs))
    it.labels.remove(name)
    return Reply(body=[objects.label(call.base, r, r.labels[n]) for n in it.labels])


def _react(call: Call, reactions: list[Reaction]) -> Reply:
    content = call.field("content", str, required=True)
    if content not in REACTIONS:
        raise validation_failed(
            call.docs, {"resource": "Reaction", "code": "invalid", "field": "content", "value": content}
        )
    for rx in reactions:
        if rx.user == call.login and rx.content == content:
            return Reply(200, objects.reaction(call.base, call.store, rx))
    rx = Reaction(call.store.next_id(), call.login, content, time.time())
    reactions.append(rx)
    return Reply(201, objects.reaction(call.base, call.store, rx))


def react_issue(call: Call) -> Reply:
    r = call.repo()
    return _react(call, _issue(call, r).reactions)


def react_comment(call: Call) -> Reply:
    r = call.repo()
    return _react(call, _comment(call, r).reactions)


def _reactions(call: Call, reactions: list[Reaction]) -> Reply:
    wanted = call.query.get("content")
    rows = [objects.reaction(call.base, call.store, rx) for rx in reactions if wanted in (None, rx.content)]
    return Reply(body=rows, paginate=True)


def list_issue_reactions(call: Call) -> Reply:
    r = call.repo()
    return _reactions(call, _issue(call, r).reactions)


def list_comment_reactions(call: Call) -> Reply:
    r = call.repo()
    return _reactions(call, _comment(call, r).reactions)


# --- pull requests ------------------------------------------------------------------------------


def _pull(call: Call, r: Repo) -> Issue:
    found = r.issues.get(int(call.params["pull_number"]))
    if found is None or found.pull is None:
        raise not_found(call.docs)
    return found


def _split_head(r: Repo, head: str) -> tuple[str, str]:
    """``owner:branch`` (or a bare branch of ``r`` itself) as (owner, branch)."""
    owner, sep, ref = head.partition(":")
    return (owner, ref) if sep else (r.owner, head)


def _head_owner(pr: Pull) -> str:
    return pr.head_repo.partition("/")[0].lower()


def list_pulls(call: Call) -> Reply:
    r = call.repo()
    state = call.query.get("state", "open")
    if state not in ("open", "closed", "all"):
        raise pr_invalid(call.docs, field="state", code="invalid")
    head = call.query.get("head")
    base = call.query.get("base")
    rows = []
    for it in sorted(r.issues.values(), key=lambda i: -i.number):
        if it.pull is None or state not in ("all", it.state):
            continue
        if head is not None:
            owner, ref = _split_head(r, head)
            if (owner.lower(), ref) != (_head_owner(it.pull), it.pull.head_ref):
                continue
        if base is not None and base != it.pull.base_ref:
            continue
        rows.append(objects.pull(call.base, call.store, r, it, full=False))
    return Reply(body=rows, paginate=True)


def create_pull(call: Call) -> Reply:
    r = call.repo()
    assert call.token is not None
    if call.token.actions and not call.store.settings.actions_can_create_prs:
        raise ApiError(403, error_body(403, ACTIONS_MAY_NOT_CREATE_PRS, call.docs))
    title = call.field("title", str)
    head = call.field("head", str, required=True)
    base = call.field("base", str, required=True)
    body = call.field("body", str)
    errors: list[Json] = []
    head_owner, head_ref = _split_head(r, head)
    head_repo = call.store.fork_of(r, head_owner)
    head_sha = None
    if head_repo is r:
        head_sha = objects.branch_sha(r, head_ref)
    elif head_repo is not None:
        head_sha = objects.fetch_head(r, head_repo, head_ref)
    base_sha = objects.branch_sha(r, base)
    if base_sha is None:
        errors.append({"resource": "PullRequest", "field": "base", "code": "invalid"})
    if head_sha is None:
        errors.append({"resource": "PullRequest", "field": "head", "code": "invalid"})
    if errors:
        raise validation_failed(call.docs, *errors)
    assert head_sha is not None and base_sha is not None and head_repo is not None
    for it in r.issues.values():
        if it.pull is None or it.state != "open" or it.pull.base_ref != base:
            continue
        if (it.pull.head_repo.lower(), it.pull.head_ref) == (head_repo.full_name.lower(), head_ref):
            message = f"A pull request already exists for {head_repo.owner}:{head_ref}."
            raise pr_invalid(call.docs, code="custom", message=message)
    try:
        start = git.merge_base(r.path, base_sha, head_sha)
    except GitError:
        start = ""
    if start == head_sha or not start:
        message = f"No commits between {base} and {head_ref}"
        raise pr_invalid(call.docs, code="custom", message=message)
    if not title:
        raise validation_failed(call.docs, {"resource": "Issue", "field": "title", "code": "missing_field"})
    now = time.time()
    pr = Pull(head_ref, base, head_sha, base_sha, head_repo.full_name, bool(call.field("draft", bool)))
    pr.maintainer_can_modify = bool(call.field("maintainer_can_modify", bool))
    it = Issue(next(r.numbers), title, body, call.login, now, now, pull=pr)
    r.issues[it.number] = it
    if head_repo is not r:
        git.update_ref(r.path, objects.pull_ref(it.number), head_sha)
    headers = {"Location": f"{call.base}/repos/{r.full_name}/pulls/{it.number}"}
    return Reply(201, objects.pull(call.base, call.store, r, it), headers)


def get_pull(call: Call) -> Reply:
    r = call.repo()
    return Reply(body=objects.pull(call.base, call.store, r, _pull(call, r)))


def update_pull(call: Call) -> Reply:
    r = call.repo()
    it = _pull(call, r)
    assert it.pull is not None
    title, body, state = call.field("title", str), call.field("body", str), call.field("state", str)
    base = call.field("base", str)
    if state not in (None, "open", "closed"):
        raise pr_invalid(call.docs, field="state", code="invalid")
    if base is not None:
        if objects.branch_sha(r, base) is None:
            raise pr_invalid(call.docs, field="base", code="invalid")
        it.pull.base_ref = base
    if state == "open" and it.state == "closed":
        if objects.branch_sha(call.store.head_repo(r, it.pull), it.pull.head_ref) is None:
            message = "state cannot be changed. The head branch has been deleted."
            raise pr_invalid(call.docs, code="custom", message=message)
        if objects.branch_sha(r, it.pull.base_ref) is None:
            message = "state cannot be changed. The base branch has been deleted."
            raise pr_invalid(call.docs, code="custom", message=message)
    objects.live_shas(call.store, r, it)
    now = time.time()
    if title is not None:
        it.title = title
    if body is not None:
        it.body = body
    if state is not None and state != it.state:
        it.state = state
        it.closed_at = now if state == "closed" else None
    it.updated_at = now
    return Reply(body=objects.pull(call.base, call.store, r, it))


def _files(store: Store, r: Repo, it: Issue, commit_id: str | None = None) -> dict[str, pulls.FileDiff]:
    base_sha, head_sha = objects.live_shas(store, r, it)
    return {f.filename: f for f in pulls.compute_files(r.path, base_sha, commit_id or head_sha)}


def list_files(call: Call) -> Reply:
    r = call.repo()
    it = _pull(call, r)
    _, head_sha = objects.live_shas(call.store, r, it)
    rows = [objects.diff_entry(call.base, r, head_sha, f) for f in _files(call.store, r, it).values()]
    return Reply(body=rows, paginate=True)


def _commit_in_pull(store: Store, r: Repo, it: Issue, commit_id: str) -> bool:
    _, head_sha = objects.live_shas(store, r, it)
    sha = git.try_rev_parse(r.path, commit_id)
    return sha is not None and git.is_ancestor(r.path, sha, head_sha)


def create_review(call: Call) -> Reply:
    r = call.repo()
    it = _pull(call, r)
    event = call.field("event", str)
    if event not in (None, "APPROVE", "REQUEST_CHANGES", "COMMENT"):
        raise ApiError(
            422, _invalid(f"For 'properties/event', {event!r} is not one of the allowed values.", call.docs)
        )
    if event in ("APPROVE", "REQUEST_CHANGES") and it.user == call.login:
        verb = "approve" if event == "APPROVE" else "request changes on"
        raise unprocessable(call.docs, f"Can not {verb} your own pull request")
    actions = call.token is not None and call.token.actions
    if event == "APPROVE" and actions and not call.store.settings.actions_can_create_prs:
        raise ApiError(403, error_body(403, ACTIONS_MAY_NOT_CREATE_PRS, call.docs))
    body = call.field("body", str) or ""
    comments = call.field("comments", list) or []
    _, head_sha = objects.live_shas(call.store, r, it)
    commit_id = call.field("commit_id", str) or head_sha
    if not _commit_in_pull(call.store, r, it, commit_id):
        raise unprocessable(call.docs, "Commit id could not be resolved")
    files = _files(call.store, r, it, commit_id)
    anchors: list[tuple[Json, pulls.Anchor]] = []
    messages: list[str] = []
    for item in comments:
        if not isinstance(item, dict) or not isinstance(item.get("body"), str):
            raise ApiError(422, _invalid("For 'items', comments need a path and a body.", call.docs))
        result = pulls.check_thread(files, {k: v for k, v in item.items() if k != "subject_type"})
        if isinstance(result, list):
            messages.extend(result)
        else:
            anchors.append((item, result))
    if messages:  # one bad thread rejects the whole review, as on GitHub
        raise unprocessable(call.docs, pulls.review_errors(messages))
    now = time.time()
    review = Review(
        call.store.next_id(), it.number, call.login, body, objects.review_state(event), commit_id, now
    )
    r.reviews[review.id] = review
    for item, anchor in anchors:
        _store_thread(call, r, it, review.id, str(item["body"]), commit_id, anchor)
    return Reply(200, objects.review(call.base, call.store, r, review))


def _store_thread(
    call: Call, r: Repo, it: Issue, review_id: int, body: str, commit_id: str, a: pulls.Anchor
) -> ReviewComment:
    c = ReviewComment(
        call.store.next_id(),
        review_id,
        it.number,
        call.login,
        body,
        a.path,
        commit_id,
        a.diff_hunk,
        a.line,
        a.side,
        a.start_line,
        a.start_side,
        a.position,
        a.subject_type,
        time.time(),
    )
    r.review_comments[c.id] = c
    return c


def create_review_comment(call: Call) -> Reply:
    r = call.repo()
    it = _pull(call, r)
    body = call.field("body", str, required=True)
    reply_to = call.field("in_reply_to", int)
    if reply_to is not None:
        parent = r.review_comments.get(reply_to)
        if parent is None or parent.pull != it.number:
            raise not_found(call.docs)
        c = dataclasses.replace(
            parent,
            id=call.store.next_id(),
            user=call.login,
            body=body,
            created_at=time.time(),
            in_reply_to=reply_to,
        )
        r.review_comments[c.id] = c
        return Reply(201, objects.review_comment(call.base, call.store, r, c))
    commit_id = call.field("commit_id", str, required=True)
    call.field("path", str, required=True)
    subject = call.field("subject_type", str) or "line"
    if subject not in ("line", "file"):
        raise thread_invalid(call.docs, code="invalid", field="subject_type")
    if not _commit_in_pull(call.store, r, it, commit_id):
        message = "pull_request_review_thread.end_commit_oid is not part of the pull request"
        raise thread_invalid(
            call.docs, code="custom", field="pull_request_review_thread.end_commit_oid", message=message
        )
    if subject == "line" and call.field("line", int) is None and call.field("position", int) is None:
        raise thread_invalid(call.docs, code="missing_field", field="line")
    result = pulls.check_thread(_files(call.store, r, it, commit_id), call.body)
    if isinstance(result, list):
        where = "path" if pulls.PATH_INVALID in result else "line"
        if pulls.START_SAME_HUNK in result or pulls.START_PRECEDES in result:
            where = "start_line"
        field = f"pull_request_review_thread.{where}"
        raise thread_invalid(call.docs, code="custom", field=field, message="could not be resolved")
    now = time.time()
    review = Review(call.store.next_id(), it.number, call.login, "", "COMMENTED", commit_id, now)
    r.reviews[review.id] = review
    c = _store_thread(call, r, it, review.id, body, commit_id, result)
    headers = {"Location": f"{call.base}/repos/{r.full_name}/pulls/comments/{c.id}"}
    return Reply(201, objects.review_comment(call.base, call.store, r, c), headers)


def get_review_comment(call: Call) -> Reply:
    r = call.repo()
    c = r.review_comments.get(int(call.params["comment_id"]))
    if c is None:
        raise not_found(call.docs)
    return Reply(body=objects.review_comment(call.base, call.store, r, c))


def list_reviews(call: Call) -> Reply:
    r = call.repo()
    it = _pull(call, r)
    rows = [objects.review(call.base, call.store, r, rv) for rv in r.reviews.values() if rv.pull == it.number]
    return Reply(body=rows, paginate=True)


def get_review(call: Call) -> Reply:
    r = call.repo()
    it = _pull(call, r)
    rv = r.reviews.get(int(call.params["review_id"]))
    if rv is None or rv.pull != it.number:
        raise not_found(call.docs)
    return Reply(body=objects.review(call.base, call.store, r, rv))


def list_review_comments(call: Call) -> Reply:
    r = call.repo()
    it = _pull(call, r)
    wanted = call.params.get("review_id")
    rows = [
        objects.review_comment(call.base, call.store, r, c)
        for c in r.review_comments.values()
        if c.pull == it.number and wanted in (None, str(c.review_id))
    ]
    return Reply(body=rows, paginate=True)


# --- the route table ------------------------------------------------------------------------------

Handler = Callable[[Call], Reply]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    scope: str | None  # None: a read; else the token scope a write needs
    docs: str
    handler: Handler


_PARAM = {
    "ref": ".+",
    "branch": ".+",
    "issue_number": r"\d+",
    "pull_number": r"\d+",
    "comment_id": r"\d+",
    "review_id": r"\d+",
}


def _route(method: str, template: str, scope: str | None, docs: str, handler: Handler) -> Route:
    regex = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m[1]}>{_PARAM.get(m[1], '[^/]+')})", template)
    return Route(method, re.compile(f"^{regex}$"), scope, f"{DOCS}/{docs}", handler)


_R = "/repos/{owner}/{repo}"
ROUTES = (
    _route("GET", "/user", None, "users/users#get-the-authenticated-user", get_authenticated),
    _route("GET", _R, None, "repos/repos#get-a-repository", get_repo),
    _route("GET", _R + "/branches", None, "branches/branches#list-branches", list_branches),
    _route("GET", _R + "/branches/{branch}", None, "branches/branches#get-a-branch", get_branch),
    _route("GET", _R + "/git/ref/{ref}", None, "git/refs#get-a-reference", get_ref),
    _route(
        "GET",
        _R + "/collaborators/{username}/permission",
        None,
        "collaborators/collaborators#get-repository-permissions-for-a-user",
        collaborator_permission,
    ),
    _route("POST", _R + "/issues", "issues", "issues/issues#create-an-issue", create_issue),
    _route(
        "GET", _R + "/issues/comments/{comment_id}", None, "issues/comments#get-an-issue-comment", get_comment
    ),
    _route(
        "PATCH",
        _R + "/issues/comments/{comment_id}",
        "issues",
        "issues/comments#update-an-issue-comment",
        update_comment,
    ),
    _route(
        "GET",
        _R + "/issues/comments/{comment_id}/reactions",
        None,
        "reactions/reactions#list-reactions-for-an-issue-comment",
        list_comment_reactions,
    ),
    _route(
        "POST",
        _R + "/issues/comments/{comment_id}/reactions",
        "issues",
        "reactions/reactions#create-reaction-for-an-issue-comment",
        react_comment,
    ),
    _route("GET", _R + "/issues/{issue_number}", None, "issues/issues#get-an-issue", get_issue),
    _route(
        "GET",
        _R + "/issues/{issue_number}/comments",
        None,
        "issues/comments#list-issue-comments",
        list_comments,
    ),
    _route(
        "POST",
        _R + "/issues/{issue_number}/comments",
        "issues",
        "issues/comments#create-an-issue-comment",
        create_comment,
    ),
    _route(
        "GET",
        _R + "/issues/{issue_number}/labels",
        None,
        "issues/labels#list-labels-for-an-issue",
        list_labels,
    ),
    _route(
        "POST",
        _R + "/issues/{issue_number}/labels",
        "issues",
        "issues/labels#add-labels-to-an-issue",
        add_labels,
    ),
    _route(
        "DELETE",
        _R + "/issues/{issue_number}/labels/{name}",
        "issues",
        "issues/labels#remove-a-label-from-an-issue",
        remove_label,
    ),
    _route(
        "GET",
        _R + "/issues/{issue_number}/reactions",
        None,
        "reactions/reactions#list-reactions-for-an-issue",
        list_issue_reactions,
    ),
    _route(
        "POST",
        _R + "/issues/{issue_number}/reactions",
        "issues",
        "reactions/reactions#create-reaction-for-an-issue",
        react_issue,
    ),
    _route("GET", _R + "/pulls", None, "pulls/pulls#list-pull-requests", list_pulls),
    _route("POST", _R + "/pulls", "pull_requests", "pulls/pulls#create-a-pull-request", create_pull),
    _route(
        "GET",
        _R + "/pulls/comments/{comment_id}",
        None,
        "pulls/comments#get-a-review-comment-for-a-pull-request",
        get_review_comment,
    ),
    _route("GET", _R + "/pulls/{pull_number}", None, "pulls/pulls#get-a-pull-request", get_pull),
    _route(
        "PATCH",
        _R + "/pulls/{pull_number}",
        "pull_requests",
        "pulls/pulls#update-a-pull-request",
        update_pull,
    ),
    _route(
        "GET", _R + "/pulls/{pull_number}/files", None, "pulls/pulls#list-pull-requests-files", list_files
    ),
    _route(
        "GET",
        _R + "/pulls/{pull_number}/comments",
        None,
        "pulls/comments#list-review-comments-on-a-pull-request",
        list_review_comments,
    ),
    _route(
        "POST",
        _R + "/pulls/{pull_number}/comments",
        "pull_requests",
        "pulls/comments#create-a-review-comment-for-a-pull-request",
        create_review_comment,
    ),
    _route(
        "GET",
        _R + "/pulls/{pull_number}/reviews",
        None,
        "pulls/reviews#list-reviews-for-a-pull-request",
        list_reviews,
    ),
    _route(
        "POST",
        _R + "/pulls/{pull_number}/reviews",
        "pull_requests",
        "pulls/reviews#create-a-review-for-a-pull-request",
        create_review,
    ),
    _route(
        "GET",
        _R + "/pulls/{pull_number}/reviews/{review_id}",
        None,
        "pulls/reviews#get-a-review-for-a-pull-request",
        get_review,
    ),
    _route(
        "GET",
        _R + "/pulls/{pull_number}/reviews/{review_id}/comments",
        None,
        "pulls/reviews#list-comments-for-a-pull-request-review",
        list_review_comments,
    ),
)


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | str | None:
    """The route and its path parameters; "" when the path exists for another method; None when unknown."""
    other = False
    for route in ROUTES:
        found = route.pattern.match(path)
        if found:
            if route.method == method:
                return route, found.groupdict()
            other = True
    return "" if other else None
