"""JSON shapes of GitHub's REST objects, with absolute URLs built from the request's host.

Every required field of GitHub's OpenAPI schema is present (the OpenAPI test checks it). The API and the
web pages share one host here: ``{base}/repos/o/r`` is the API, ``{base}/o/r`` the html page and
``{base}/o/r.git`` the clone URL (served by ``git http-backend``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ci_swarm import git
from ci_swarm.testing.fake_github import pulls
from ci_swarm.testing.fake_github.store import (
    REACTIONS,
    Comment,
    Issue,
    Label,
    Reaction,
    Repo,
    Review,
    ReviewComment,
    Store,
    User,
    iso,
)

Json = dict[str, Any]
_REPO_TEMPLATES = {
    "archive_url": "/{archive_format}{/ref}",
    "assignees_url": "/assignees{/user}",
    "blobs_url": "/git/blobs{/sha}",
    "branches_url": "/branches{/branch}",
    "collaborators_url": "/collaborators{/collaborator}",
    "comments_url": "/comments{/number}",
    "commits_url": "/commits{/sha}",
    "compare_url": "/compare/{base}...{head}",
    "contents_url": "/contents/{+path}",
    "contributors_url": "/contributors",
    "deployments_url": "/deployments",
    "downloads_url": "/downloads",
    "events_url": "/events",
    "forks_url": "/forks",
    "git_commits_url": "/git/commits{/sha}",
    "git_refs_url": "/git/refs{/sha}",
    "git_tags_url": "/git/tags{/sha}",
    "hooks_url": "/hooks",
    "issue_comment_url": "/issues/comments{/number}",
    "issue_events_url": "/issues/events{/number}",
    "issues_url": "/issues{/number}",
    "keys_url": "/keys{/key_id}",
    "labels_url": "/labels{/name}",
    "languages_url": "/languages",
    "merges_url": "/merges",
    "milestones_url": "/milestones{/number}",
    "notifications_url": "/notifications{?since,all,participating}",
    "pulls_url": "/pulls{/number}",
    "releases_url": "/releases{/id}",
    "stargazers_url": "/stargazers",
    "statuses_url": "/statuses/{sha}",
    "subscribers_url": "/subscribers",
    "subscription_url": "/subscription",
    "tags_url": "/tags",
    "teams_url": "/teams",
    "trees_url": "/git/trees{/sha}",
}
_USER_TEMPLATES = {
    "followers_url": "/followers",
    "following_url": "/following{/other_user}",
    "gists_url": "/gists{/gist_id}",
    "starred_url": "/starred{/owner}{/repo}",
    "subscriptions_url": "/subscriptions",
    "organizations_url": "/orgs",
    "repos_url": "/repos",
    "events_url": "/events{/privacy}",
    "received_events_url": "/received_events",
}


def node_id(kind: str, ident: int) -> str:
    return f"{kind}_kwDO{ident:08d}"


def user(base: str, u: User) -> Json:
    api = f"{base}/users/{u.login}"
    return {
        "login": u.login,
        "id": u.id,
        "node_id": node_id("U", u.id),
        "avatar_url": f"{base}/avatars/{u.login}",
        "gravatar_id": "",
        "url": api,
        "html_url": f"{base}/{u.login}",
        **{k: api + v for k, v in _USER_TEMPLATES.items()},
        "type": u.type,
        "site_admin": False,
        "user_view_type": "public",
    }


def public_user(base: str, u: User) -> Json:
    profile = {"name": u.login, "company": None, "blog": "", "location": None, "email": None, "bio": None}
    counts = {"hireable": None, "public_repos": 0, "public_gists": 0, "followers": 0, "following": 0}
    when = {"created_at": "2020-01-01T00:00:00Z", "updated_at": "2020-01-01T00:00:00Z"}
    return {**user(base, u), **profile, **counts, **when}


def repo(base: str, store: Store, r: Repo, *, full: bool = True) -> Json:
    api = f"{base}/repos/{r.full_name}"
    owner = store.user(r.owner)
    forks = sum(1 for other in store.repos.values() if (other.parent or "").lower() == r.full_name.lower())
    data: Json = {
        "id": r.id,
        "node_id": node_id("R", r.id),
        "name": r.name,
        "full_name": r.full_name,
        "owner": user(base, owner),
        "private": False,
        "html_url": f"{base}/{r.full_name}",
        "description": None,
        "fork": r.parent is not None,
        "url": api,
        **{k: api + v for k, v in _REPO_TEMPLATES.items()},
        "git_url": f"{base.replace('http', 'git', 1)}/{r.full_name}.git",
        "ssh_url": f"git@{base.split('://', 1)[-1]}:{r.full_name}.git",
        "clone_url": f"{base}/{r.full_name}.git",
        "svn_url": f"{base}/{r.full_name}",
        "mirror_url": None,
        "homepage": None,
        "language": None,
        "forks": forks,
        "forks_count": forks,
        "stargazers_count": 0,
        "watchers": 0,
        "watchers_count": 0,
        "size": 0,
        "default_branch": r.default_branch,
        "open_issues": sum(1 for i in r.issues.values() if i.state == "open"),
        "open_issues_count": sum(1 for i in r.issues.values() if i.state == "open"),
        "is_template": False,
        "topics": [],
        "has_issues": True,
        "has_projects": True,
        "has_wiki": True,
        "has_pages": False,
        "has_downloads": True,
        "has_discussions": False,
        "archived": False,
        "disabled": False,
        "visibility": "public",
        "license": None,
        "pushed_at": iso(r.created_at),
        "created_at": iso(r.created_at),
        "updated_at": iso(r.created_at),
        "allow_forking": True,
        "web_commit_signoff_required": False,
    }
    if full:
        data.update(network_count=0, subscribers_count=0)
        if r.parent is not None and r.parent.lower() in store.repos:
            data["parent"] = repo(base, store, store.repos[r.parent.lower()], full=False)
            data["source"] = repo(base, store, store.source(r), full=False)
    return data


def label(base: str, r: Repo, lab: Label) -> Json:
    return {
        "id": lab.id,
        "node_id": node_id("LA", lab.id),
        "url": f"{base}/repos/{r.full_name}/labels/{lab.name}",
        "name": lab.name,
        "description": lab.description,
        "color": lab.color,
        "default": False,
    }


def reaction(base: str, store: Store, rx: Reaction) -> Json:
    return {
        "id": rx.id,
        "node_id": node_id("REA", rx.id),
        "user": user(base, store.user(rx.user)),
        "content": rx.content,
        "created_at": iso(rx.created_at),
    }


def rollup(url: str, reactions: list[Reaction]) -> Json:
    counts = {c: sum(1 for rx in reactions if rx.content == c) for c in REACTIONS}
    return {"url": url, "total_count": len(reactions), **counts}


def association(store: Store, r: Repo, login: str) -> str:
    return store.association(r, login)


def issue(base: str, store: Store, r: Repo, it: Issue) -> Json:
    api = f"{base}/repos/{r.full_name}/issues/{it.number}"
    kind = "pull" if it.pull else "issues"
    data: Json = {
        "id": it.number + r.id * 100000,
        "node_id": node_id("I", it.number + r.id * 100000),
        "url": api,
        "repository_url": f"{base}/repos/{r.full_name}",
        "labels_url": api + "/labels{/name}",
        "comments_url": api + "/comments",
        "events_url": api + "/events",
        "html_url": f"{base}/{r.full_name}/{kind}/{it.number}",
        "number": it.number,
        "state": it.state,
        "title": it.title,
        "body": it.body,
        "user": user(base, store.user(it.user)),
        "labels": [label(base, r, r.labels[name]) for name in it.labels],
        "assignee": None,
        "assignees": [],
        "milestone": None,
        "locked": False,
        "active_lock_reason": None,
        "comments": sum(1 for c in r.comments.values() if c.issue == it.number),
        "closed_at": iso(it.closed_at) if it.closed_at else None,
        "created_at": iso(it.created_at),
        "updated_at": iso(it.updated_at),
        "author_association": association(store, r, it.user),
        "reactions": rollup(api + "/reactions", it.reactions),
    }
    if it.state == "closed":  # open issues: GitHub sends null, which the description's enum cannot express
        data["state_reason"] = "completed"
    if it.pull:
        data["pull_request"] = {
            "url": f"{base}/repos/{r.full_name}/pulls/{it.number}",
            "html_url": data["html_url"],
            "diff_url": data["html_url"] + ".diff",
            "patch_url": data["html_url"] + ".patch",
            "merged_at": None,
        }
    return data


def comment(base: str, store: Store, r: Repo, c: Comment) -> Json:
    api = f"{base}/repos/{r.full_name}/issues/comments/{c.id}"
    issue_of = r.issues[c.issue]
    kind = "pull" if issue_of.pull else "issues"
    return {
        "id": c.id,
        "node_id": node_id("IC", c.id),
        "url": api,
        "html_url": f"{base}/{r.full_name}/{kind}/{c.issue}#issuecomment-{c.id}",
        "body": c.body,
        "user": user(base, store.user(c.user)),
        "created_at": iso(c.created_at),
        "updated_at": iso(c.updated_at),
        "issue_url": f"{base}/repos/{r.full_name}/issues/{c.issue}",
        "author_association": association(store, r, c.user),
        "reactions": rollup(api + "/reactions", c.reactions),
    }


def branch_sha(r: Repo, name: str) -> str | None:
    return git.try_rev_parse(r.path, f"refs/heads/{name}")


def _side(base: str, store: Store, r: Repo, ref: str, sha: str) -> Json:
    return {
        "label": f"{r.owner}:{ref}",
        "ref": ref,
        "sha": sha,
        "user": user(base, store.user(r.owner)),
        "repo": repo(base, store, r, full=False),
    }


def pull_ref(number: int) -> str:
    return f"refs/pull/{number}/head"


def fetch_head(r: Repo, head: Repo, branch: str, ref: str = "FETCH_HEAD") -> str | None:
    """Bring ``head``'s ``branch`` into ``r`` (GitHub keeps a fork PR's head in the base repository as
    ``refs/pull/N/head``, so diffs and reviews work on one repository); the commit, None without a branch."""
    if branch_sha(head, branch) is None:
        return None
    spec = f"refs/heads/{branch}" if ref == "FETCH_HEAD" else f"+refs/heads/{branch}:{ref}"
    git.fetch(r.path, str(head.path), [spec])
    return git.rev_parse(r.path, ref)


def live_shas(store: Store, r: Repo, it: Issue) -> tuple[str, str]:
    """The pull's (base, head) commits now; remembered when a branch is gone."""
    assert it.pull is not None
    pr = it.pull
    if it.state == "open":
        head = store.head_repo(r, pr)
        if head is r:
            live = branch_sha(r, pr.head_ref) or pr.head_sha
            pr.head_sha = pulls.visible_head(pr, live, store.settings.head_sha_delay, time.monotonic())
        elif branch_sha(head, pr.head_ref) not in (None, git.try_rev_parse(r.path, pull_ref(it.number))):
            pr.head_sha = fetch_head(r, head, pr.head_ref, pull_ref(it.number)) or pr.head_sha
        pr.base_sha = branch_sha(r, pr.base_ref) or pr.base_sha
    return pr.base_sha, pr.head_sha


def pull(base: str, store: Store, r: Repo, it: Issue, *, full: bool = True) -> Json:
    assert it.pull is not None
    pr = it.pull
    base_sha, head_sha = live_shas(store, r, it)
    api = f"{base}/repos/{r.full_name}/pulls/{it.number}"
    issue_api = f"{base}/repos/{r.full_name}/issues/{it.number}"
    html = f"{base}/{r.full_name}/pull/{it.number}"
    data: Json = {
        "url": api,
        "id": it.number + r.id * 100000,
        "node_id": node_id("PR", it.number + r.id * 100000),
        "html_url": html,
        "diff_url": html + ".diff",
        "patch_url": html + ".patch",
        "issue_url": issue_api,
        "commits_url": api + "/commits",
        "review_comments_url": api + "/comments",
        "review_comment_url": f"{base}/repos/{r.full_name}/pulls/comments{{/number}}",
        "comments_url": issue_api + "/comments",
        "statuses_url": f"{base}/repos/{r.full_name}/statuses/{head_sha}",
        "number": it.number,
        "state": it.state,
        "locked": False,
        "title": it.title,
        "user": user(base, store.user(it.user)),
        "body": it.body,
        "labels": [label(base, r, r.labels[name]) for name in it.labels],
        "milestone": None,
        "active_lock_reason": None,
        "created_at": iso(it.created_at),
        "updated_at": iso(it.updated_at),
        "closed_at": iso(it.closed_at) if it.closed_at else None,
        "merged_at": None,
        "merge_commit_sha": None,
        "assignee": None,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "head": _side(base, store, store.head_repo(r, pr), pr.head_ref, head_sha),
        "base": _side(base, store, r, pr.base_ref, base_sha),
        "_links": {
            name: {"href": href}
            for name, href in (
                ("self", api),
                ("html", html),
                ("issue", issue_api),
                ("comments", issue_api + "/comments"),
                ("review_comments", api + "/comments"),
                ("review_comment", f"{base}/repos/{r.full_name}/pulls/comments{{/number}}"),
                ("commits", api + "/commits"),
                ("statuses", f"{base}/repos/{r.full_name}/statuses/{head_sha}"),
            )
        },
        "author_association": association(store, r, it.user),
        "auto_merge": None,
        "draft": pr.draft,
    }
    if full:
        data.update(_pull_stats(store, r, it, base_sha, head_sha))
    return data


def _pull_stats(store: Store, r: Repo, it: Issue, base_sha: str, head_sha: str) -> Json:
    files = pulls.compute_files(r.path, base_sha, head_sha)
    start = git.merge_base(r.path, base_sha, head_sha)
    commits = int(git.out(r.path, "rev-list", "--count", f"{start}..{head_sha}"))
    return {
        "merged": False,
        "mergeable": it.state == "open" or None,
        "rebaseable": None,
        "mergeable_state": "clean" if it.state == "open" else "unknown",
        "merged_by": None,
        "comments": sum(1 for c in r.comments.values() if c.issue == it.number),
        "review_comments": sum(1 for c in r.review_comments.values() if c.pull == it.number),
        "maintainer_can_modify": it.pull.maintainer_can_modify if it.pull else False,
        "commits": commits,
        "additions": sum(f.additions for f in files),
        "deletions": sum(f.deletions for f in files),
        "changed_files": len(files),
    }


def diff_entry(base: str, r: Repo, head_sha: str, f: pulls.FileDiff) -> Json:
    data: Json = {
        "sha": f.sha,
        "filename": f.filename,
        "status": f.status,
        "additions": f.additions,
        "deletions": f.deletions,
        "changes": f.additions + f.deletions,
        "blob_url": f"{base}/{r.full_name}/blob/{head_sha}/{f.filename}",
        "raw_url": f"{base}/{r.full_name}/raw/{head_sha}/{f.filename}",
        "contents_url": f"{base}/repos/{r.full_name}/contents/{f.filename}?ref={head_sha}",
    }
    if f.patch is not None:
        data["patch"] = f.patch
    if f.previous_filename:
        data["previous_filename"] = f.previous_filename
    return data


_REVIEW_STATE = {"COMMENT": "COMMENTED", "APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED"}


def review_state(event: str | None) -> str:
    return _REVIEW_STATE.get(event or "", "PENDING")


def review(base: str, store: Store, r: Repo, rv: Review) -> Json:
    html = f"{base}/{r.full_name}/pull/{rv.pull}#pullrequestreview-{rv.id}"
    pr_api = f"{base}/repos/{r.full_name}/pulls/{rv.pull}"
    data: Json = {
        "id": rv.id,
        "node_id": node_id("PRR", rv.id),
        "user": user(base, store.user(rv.user)),
        "body": rv.body,
        "state": rv.state,
        "html_url": html,
        "pull_request_url": pr_api,
        "_links": {"html": {"href": html}, "pull_request": {"href": pr_api}},
        "commit_id": rv.commit_id,
        "author_association": association(store, r, rv.user),
    }
    if rv.state != "PENDING":
        data["submitted_at"] = iso(rv.submitted_at)
    return data


_NOT_NULLABLE = {"line", "original_line", "position", "original_position", "side", "start_side"}


def review_comment(base: str, store: Store, r: Repo, c: ReviewComment) -> Json:
    api = f"{base}/repos/{r.full_name}/pulls/comments/{c.id}"
    html = f"{base}/{r.full_name}/pull/{c.pull}#discussion_r{c.id}"
    pr_api = f"{base}/repos/{r.full_name}/pulls/{c.pull}"
    data: Json = {
        "url": api,
        "pull_request_review_id": c.review_id,
        "id": c.id,
        "node_id": node_id("PRRC", c.id),
        "diff_hunk": c.diff_hunk,
        "path": c.path,
        "position": c.position,
        "original_position": c.position,
        "commit_id": c.commit_id,
        "original_commit_id": c.commit_id,
        "user": user(base, store.user(c.user)),
        "body": c.body,
        "created_at": iso(c.created_at),
        "updated_at": iso(c.created_at),
        "html_url": html,
        "pull_request_url": pr_api,
        "author_association": association(store, r, c.user),
        "_links": {"self": {"href": api}, "html": {"href": html}, "pull_request": {"href": pr_api}},
        "line": c.line,
        "original_line": c.line,
        "side": c.side or "RIGHT",
        "start_line": c.start_line,
        "original_start_line": c.start_line,
        "start_side": c.start_side,
        "subject_type": c.subject_type,
        "reactions": rollup(api + "/reactions", []),
    }
    if c.in_reply_to is not None:
        data["in_reply_to_id"] = c.in_reply_to
    # file-level threads have no line, side or position: GitHub's description has no null for those
    return {k: v for k, v in data.items() if v is not None or k not in _NOT_NULLABLE}


def commit(base: str, r: Repo, sha: str) -> Json:
    fmt = "%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%T%x00%P%x00%B"
    fields = git.run(r.path, "log", "-1", f"--format={fmt}", sha).text.split("\0")
    an, ae, ad, cn, ce, cd, tree, parents, message = fields
    api = f"{base}/repos/{r.full_name}"
    return {
        "url": f"{api}/commits/{sha}",
        "sha": sha,
        "node_id": node_id("C", int(sha[:7], 16)),
        "html_url": f"{base}/{r.full_name}/commit/{sha}",
        "comments_url": f"{api}/commits/{sha}/comments",
        "commit": {
            "url": f"{api}/git/commits/{sha}",
            "author": {"name": an, "email": ae, "date": ad},
            "committer": {"name": cn, "email": ce, "date": cd},
            "message": message.rstrip("\n"),
            "comment_count": 0,
            "tree": {"sha": tree, "url": f"{api}/git/trees/{tree}"},
        },
        "author": {},  # no GitHub account linked to the commit's email
        "committer": {},
        "parents": [
            {"sha": p, "url": f"{api}/commits/{p}", "html_url": f"{base}/{r.full_name}/commit/{p}"}
            for p in parents.split()
        ],
    }


def branch(base: str, r: Repo, name: str, sha: str, *, full: bool = True) -> Json:
    api = f"{base}/repos/{r.full_name}/branches/{name}"
    if not full:
        return {"name": name, "commit": {"sha": sha, "url": f"{base}/repos/{r.full_name}/commits/{sha}"}}
    return {
        "name": name,
        "commit": commit(base, r, sha),
        "_links": {"html": f"{base}/{r.full_name}/tree/{name}", "self": api},
        "protected": False,
        "protection": {
            "enabled": False,
            "required_status_checks": {"enforcement_level": "off", "contexts": [], "checks": []},
        },
        "protection_url": api + "/protection",
    }


def git_ref(base: str, r: Repo, ref: str, sha: str) -> Json:
    api = f"{base}/repos/{r.full_name}"
    return {
        "ref": ref,
        "node_id": node_id("REF", abs(hash(ref)) % 10**8),
        "url": f"{api}/git/{ref}",
        "object": {"type": "commit", "sha": sha, "url": f"{api}/git/commits/{sha}"},
    }


def bare_branches(path: Path) -> list[tuple[str, str]]:
    text = git.out(path, "for-each-ref", "--format=%(refname:strip=2) %(objectname)", "refs/heads/")
    return [(name, sha) for name, _, sha in (line.partition(" ") for line in text.splitlines()) if name]
