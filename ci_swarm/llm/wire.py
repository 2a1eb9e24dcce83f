"""Messages API wire-format helpers shared by the planner and the Claude agent: a response's content as
request blocks (to send back as the assistant turn), and the identity of a cacheable prompt prefix.

Knows nothing of the session or of its consumers; needs the SDK only for types.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anthropic.types import Message


def content_params(message: Message) -> list[dict[str, Any]]:
    """A response's content as request blocks, to send back as the assistant turn."""
    blocks: list[dict[str, Any]] = []
    for block in message.content:
        if block.type == "text":
            if block.text:  # the API refuses empty text blocks
                blocks.append({"type": "text", "text": block.text})
        elif block.type == "tool_use":
            blocks.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
        else:
            blocks.append(block.model_dump(mode="json", exclude_none=True))
    return blocks or [{"type": "text", "text": "(empty)"}]


def prefix_key(*parts: Any) -> str:
    """An identity for a cacheable prompt prefix (model, tools, shared system block)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
