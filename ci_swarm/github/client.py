"""The PyGithub factory and the error boundary.

``make_github`` builds a client for ``GITHUB_API_URL`` (or the URL given) with a bounded retry: 5xx and
secondary rate limits are retried by PyGithub's own :class:`github.GithubRetry`, a few times, with short
backoffs; nothing waits for longer than ``max_wait`` seconds. ``forge_call`` maps every PyGithub / HTTP
error to a one-line :class:`ForgeError` naming what was being done, with the token redacted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import github
import requests
from github import GithubException, GithubRetry
from urllib3.util.retry import Retry

from ci_swarm.errors import ForgeError

PUBLIC_API = "https://api.github.com"


@dataclass(frozen=True)
class RetrySettings:
    """How hard to retry: ``total`` attempts after the first, exponential ``backoff`` (seconds), the
    wait after a secondary rate limit, and the longest wait accepted before giving up."""

    total: int = 3
    backoff: float = 0.5
    secondary_rate_wait: float = 10.0
    max_wait: float = 60.0


DEFAULT_RETRY = RetrySettings()


def api_url(env: Mapping[str, str] | None = None, given: str | None = None) -> str:
    """The API root: what was given, else ``GITHUB_API_URL``, else the public API."""
    env = os.environ if env is None else env
    return (given or env.get("GITHUB_API_URL") or PUBLIC_API).rstrip("/")


def make_retry(settings: RetrySettings) -> GithubRetry:
    return GithubRetry(
        total=settings.total,
        backoff_factor=settings.backoff,
        backoff_max=settings.max_wait,
        secondary_rate_wait=settings.secondary_rate_wait,
        max_rate_limit_wait=settings.max_wait,
        respect_retry_after_header=True,
        # PATCH too: editing the progress comment is idempotent and the most frequent write
        allowed_methods=Retry.DEFAULT_ALLOWED_METHODS | {"GET", "POST", "PATCH"},
        raise_on_status=False,
    )


def make_github(
    token: str,
    base_url: str | None = None,
    *,
    retry: RetrySettings = DEFAULT_RETRY,
    timeout: int = 30,
    per_page: int = 100,
) -> github.Github:
    """A PyGithub client with token auth, bounded retries and no artificial write delays."""
    if not token:
        raise ForgeError("no GitHub token: set GITHUB_TOKEN (or the action's github_token input)")
    return github.Github(
        auth=github.Auth.Token(token),
        base_url=api_url(given=base_url),
        timeout=timeout,
        per_page=per_page,
        retry=make_retry(retry),
        seconds_between_requests=None,
        seconds_between_writes=None,
        user_agent="ci-swarm",
    )


def _message(data: Any) -> str:
    if not isinstance(data, dict):
        return str(data or "").strip()
    text = str(data.get("message") or "").strip()
    details = []
    for err in data.get("errors") or []:
        if isinstance(err, dict):
            part = err.get("message") or " ".join(
                str(err[k]) for k in ("resource", "field", "code") if err.get(k)
            )
            details.append(str(part))
        else:
            details.append(str(err))
    return f"{text}: {'; '.join(details)}" if details else text


def describe(exc: BaseException) -> str:
    """One line for a PyGithub or HTTP error (status and GitHub's own message)."""
    if isinstance(exc, GithubException):
        return f"{exc.status} {_message(exc.data)}".strip()
    return f"{type(exc).__name__}: {exc}"


def status_of(exc: BaseException) -> int | None:
    return exc.status if isinstance(exc, GithubException) else None


def redact(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


@contextmanager
def forge_call(doing: str, token: str = "") -> Iterator[None]:
    """Map PyGithub / requests / urllib3 errors raised inside to ``ForgeError("<doing>: <why>")``."""
    try:
        yield
    except ForgeError:
        raise
    except GithubException as exc:
        raise ForgeError(redact(f"{doing}: {describe(exc)}", token)) from exc
    except (requests.RequestException, OSError) as exc:
        raise ForgeError(redact(f"{doing}: {describe(exc)}", token)) from exc
