"""Conversations for vision-language models: normalising, image placeholders, segments, padding.

A conversation is a list of turns. Two spellings are accepted and normalised to the first:

- ``{"role": "user" | "assistant" | "system", "content": str}``
- LLaVA-style JSON: ``{"from": "human" | "gpt" | "system", "value": str}``

In the text, each image is marked by :data:`IMAGE_PLACEHOLDER` (``"<image>"``), whatever the
model's own image token is; the chat template of the model turns the placeholders into the
model's image markup. Images are given separately, in the order of their placeholders.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

#: how every conversation marks an image in its text (the LLaVA JSON convention)
IMAGE_PLACEHOLDER = "<image>"
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}

Turn = dict[str, str]


class ConversationError(ValueError):
    """A conversation that cannot be formatted (bad roles, placeholder/image count mismatch, ...)."""


def normalize(conversation: Sequence[Mapping[str, Any]], where: str = "conversation") -> list[Turn]:
    """``[{"role", "content"}]`` from either spelling; unknown roles or missing text raise."""
    if isinstance(conversation, (str, bytes)) or not isinstance(conversation, Sequence) or not conversation:
        raise ConversationError(f"{where}: must be a non-empty list of turns, got {type(conversation).__name__}")
    turns = []
    for i, turn in enumerate(conversation):
        role = turn.get("role", turn.get("from"))
        text = turn.get("content", turn.get("value"))
        if role not in ROLES:
            raise ConversationError(f"{where}[{i}]: role {role!r} is not one of {sorted(ROLES)}")
        if not isinstance(text, str):
            raise ConversationError(f"{where}[{i}]: the text ('content' or 'value') must be a string, got {text!r}")
        turns.append({"role": ROLES[role], "content": text})
    return turns


def count_placeholders(turns: Sequence[Turn]) -> int:
    return sum(t["content"].count(IMAGE_PLACEHOLDER) for t in turns)


def insert_placeholders(turns: list[Turn], num_images: int) -> list[Turn]:
    """Put ``num_images`` placeholders (one per line) in front of the first user turn when the
    conversation has none; a conversation that has some is returned unchanged."""
    if num_images == 0 or count_placeholders(turns) > 0:
        return turns
    out = [dict(t) for t in turns]
    for t in out:
        if t["role"] == "user":
            t["content"] = "".join(f"{IMAGE_PLACEHOLDER}\n" for _ in range(num_images)) + t["content"]
            return out
    raise ConversationError("the conversation has images but no user turn to put them in")


def validate(turns: Sequence[Turn], num_images: int, where: str = "conversation") -> None:
    """Raise unless the placeholders match the images and there is a user turn."""
    found = count_placeholders(turns)
    if found != num_images:
        raise ConversationError(
            f"{where}: {found} {IMAGE_PLACEHOLDER} placeholder(s) in the text but {num_images} image(s); "
            f"give one image per placeholder (or no placeholders, and they are put in front of the first user turn)"
        )
    if not any(t["role"] == "user" for t in turns):
        raise ConversationError(f"{where}: has no user turn")


def remove_placeholders(text: str) -> str:
    """``text`` without image placeholders (and the newline that follows each)."""
    return text.replace(IMAGE_PLACEHOLDER + "\n", "").replace(IMAGE_PLACEHOLDER, "").strip()


def to_hf_messages(turns: Sequence[Turn]) -> list[dict[str, Any]]:
    """Chat-template messages: content lists with ``{"type": "image"}`` where placeholders were."""
    messages = []
    for t in turns:
        content: list[dict[str, Any]] = []
        for k, piece in enumerate(t["content"].split(IMAGE_PLACEHOLDER)):
            if k:
                content.append({"type": "image"})
            piece = piece.lstrip("\n") if k else piece
            if piece:
                content.append({"type": "text", "text": piece})
        messages.append({"role": t["role"], "content": content})
    return messages


def segments(
    turns: Sequence[Turn], render: Callable[[list[dict[str, Any]], bool], str], generation: bool
) -> list[tuple[str, bool]]:
    """The rendered conversation cut into ``(text, trained)`` pieces; ``trained`` marks assistant replies.

    ``render(messages, add_generation_prompt)`` is the model's chat template. With ``generation``
    the conversation must end with a user turn; the generation prompt is appended. A template that
    does not render a conversation as an extension of its first turns cannot be cut this way; the
    error says so.
    """
    messages = to_hf_messages(turns)
    out: list[tuple[str, bool]] = []
    done = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        head = render(messages[:i], True)
        body = render(messages[: i + 1], False)
        if not (head.startswith(done) and body.startswith(head)):
            raise ConversationError(
                "the chat template does not render a conversation as an extension of its first turns, so the "
                "assistant replies cannot be located; override conversation_segments() in the model class"
            )
        out += [(head[len(done):], False), (body[len(head):], True)]
        done = body
    tail = render(messages, generation) if len(messages) > 0 else ""
    if generation and messages[-1]["role"] == "assistant":
        raise ConversationError("a conversation to generate from must end with a user turn")
    if tail[len(done):]:
        out.append((tail[len(done):], False))
    return out


def pad(rows: Sequence[torch.Tensor], value: int | float, side: str) -> torch.Tensor:
    """Stack 1-D tensors into [B, max_len], padding on ``side`` (``"right"`` or ``"left"``) with ``value``."""
    if side not in ("left", "right"):
        raise ValueError(f"padding side must be 'left' or 'right', got {side!r}")
    length = max(int(r.shape[0]) for r in rows)
    out = torch.full((len(rows), length), value, dtype=rows[0].dtype)
    for i, r in enumerate(rows):
        n = int(r.shape[0])
        if side == "right":
            out[i, :n] = r
        elif n:
            out[i, -n:] = r
    return out
