"""A GitHub-faithful fake: REST API + git smart HTTP over real bare repositories, on loopback.

Serves the endpoints ci-swarm uses with GitHub's rules, status codes and error bodies (review threads
must be part of the diff, all-or-nothing reviews, "A pull request already exists", Actions may not
create PRs, …), pagination with ``Link`` headers, and absolute URLs built from the request's host. Forks
(:meth:`FakeGitHub.add_fork`) are repositories of their own: a PR from ``someone:branch`` has the fork as
``head.repo`` (``fork: true``). State is read back through the same API (with PyGithub). Run it alone::

    python -m ci_swarm.testing.fake_github --port 0 --repo owner/name=PATH [--user login=permission ...]
"""

from ci_swarm.testing.fake_github.server import Exchange, FakeGitHub
from ci_swarm.testing.fake_github.store import BOT_LOGIN

__all__ = ["BOT_LOGIN", "Exchange", "FakeGitHub"]
