"""Generate the OpenAPI slice the fake GitHub is checked against.

Takes GitHub's own OpenAPI description from the npm package ``@octokit/openapi`` and keeps only the
operations ci-swarm uses, with every component they reference (transitively). Examples are dropped
to keep the slice small. The result is committed as ``ci_swarm/testing/data/github-openapi-slice.json``.

Usage (the package goes into a temporary directory, never into the repo)::

    python scripts/openapi_slice.py                     # npm pack into a temp dir, then slice
    python scripts/openapi_slice.py --spec path/to/api.github.com.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

OPERATIONS = (
    "users/get-authenticated",
    "repos/get",
    "repos/get-branch",
    "repos/list-branches",
    "repos/get-collaborator-permission-level",
    "git/get-ref",
    "pulls/list",
    "pulls/create",
    "pulls/get",
    "pulls/update",
    "pulls/list-files",
    "pulls/create-review",
    "pulls/list-reviews",
    "pulls/get-review",
    "pulls/list-comments-for-review",
    "pulls/create-review-comment",
    "pulls/get-review-comment",
    "pulls/list-review-comments",
    "issues/create",
    "issues/get",
    "issues/create-comment",
    "issues/list-comments",
    "issues/get-comment",
    "issues/update-comment",
    "issues/add-labels",
    "issues/list-labels-on-issue",
    "issues/remove-label",
    "reactions/create-for-issue",
    "reactions/list-for-issue",
    "reactions/create-for-issue-comment",
    "reactions/list-for-issue-comment",
)
PACKAGE = "@octokit/openapi"
SPEC_IN_PACKAGE = "package/generated/api.github.com.json"
OUT = Path(__file__).resolve().parent.parent / "ci_swarm" / "testing" / "data" / "github-openapi-slice.json"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _strip_examples(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_examples(v) for k, v in node.items() if k not in ("examples", "example")}
    if isinstance(node, list):
        return [_strip_examples(v) for v in node]
    return node


def slice_spec(spec: dict[str, Any], operation_ids: tuple[str, ...] = OPERATIONS) -> dict[str, Any]:
    """The operations named, plus every component they reference (pure)."""
    wanted = set(operation_ids)
    paths: dict[str, Any] = {}
    for path, item in spec["paths"].items():
        kept = {m: op for m, op in item.items() if m in METHODS and op.get("operationId") in wanted}
        if kept:
            extra = {k: v for k, v in item.items() if k not in METHODS}
            paths[path] = _strip_examples({**extra, **kept})
            wanted -= {op["operationId"] for op in kept.values()}
    if wanted:
        raise SystemExit(f"operations not in the spec: {', '.join(sorted(wanted))}")
    components: dict[str, dict[str, Any]] = {}
    todo = list(_refs(paths))
    while todo:
        ref = todo.pop()
        _, _, kind, name = ref.split("/", 3)
        if name in components.get(kind, {}):
            continue
        node = _strip_examples(spec["components"][kind][name])
        components.setdefault(kind, {})[name] = node
        todo.extend(_refs(node))
    return {
        "openapi": spec["openapi"],
        "info": {**spec["info"], "x-ci-swarm-slice": sorted(operation_ids)},
        "servers": spec.get("servers", []),
        "paths": dict(sorted(paths.items())),
        "components": {k: dict(sorted(v.items())) for k, v in sorted(components.items())},
    }


def fetch_spec(workdir: Path) -> Path:
    """``npm pack`` the package into ``workdir`` and unpack the spec from it."""
    result = subprocess.run(
        ["npm", "pack", PACKAGE, "--silent"], cwd=workdir, capture_output=True, text=True, check=True
    )
    tarball = workdir / result.stdout.strip().splitlines()[-1]
    with tarfile.open(tarball) as tar:
        tar.extract(SPEC_IN_PACKAGE, workdir, filter="data")
    return workdir / SPEC_IN_PACKAGE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, help="api.github.com.json (default: npm pack into a temp dir)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="octokit-openapi-") as tmp:
        spec_path = args.spec or fetch_spec(Path(tmp))
        spec = json.loads(spec_path.read_text())
    sliced = slice_spec(spec)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(sliced, indent=1, sort_keys=True) + "\n")
    print(f"{args.out}: {len(sliced['paths'])} paths, version {spec['info']['version']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
