"""ci-swarm: one request → parallel coding agents on git worktrees → git-native merges → a PR."""

__version__ = "0.1.0"
