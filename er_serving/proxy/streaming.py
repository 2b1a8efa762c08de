"""Server-sent events of ``er proxy`` from the backend's :class:`~er_env.backends.two_phase.StreamPiece` stream.

Chat (``chat.completion.chunk``): the first event per choice sets ``role``; thinking
arrives as ``delta.reasoning`` (and ``delta.reasoning_content``), then the solution as
``delta.content``. Where thinking closes, one event with an empty delta carries
``"thinking_end": {"forced": bool}`` on the choice: ``forced: true`` is the forced
``</think>``, which a client can tell apart from a ``</think>`` the model wrote. The
last event of a choice has ``finish_reason`` and ``thinking_truncated``; with
``stream_options.include_usage`` a final event with no choices carries ``usage``.
Completions (``text_completion``) send the same sequence as ``text`` deltas, the
``</think>`` text on the ``thinking_end`` event. With ``return_token_ids`` every event
also carries the ids it stands for. An error after the first event is sent as an
``{"error": ...}`` event (the OpenAI client raises it), never as a silent restart.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Callable

from er_env.backends.two_phase import StreamPiece
from er_env.budget import BudgetedCompletion, SpecialTokens
from er_serving.proxy.render import finish_reason, usage
from er_serving.proxy.wire import new_id, now

__all__ = ["IncrementalText", "sse", "stream_events"]


def sse(payload: dict[str, Any] | str) -> str:
    """One ``data:`` event."""
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


class IncrementalText:
    r"""Decodes a growing id list into text deltas without splitting a multi-byte character.

    The usual two-offset scheme: decode the ids since ``prefix`` with and without the
    newest ones; what the newest add is the delta, held back while it ends in an
    incomplete character (``"\ufffd"``).
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True) if ids else ""

    def push(self, ids: tuple[int, ...] | list[int], final: bool = False) -> str:
        """Add ids; return the new text (possibly empty). ``final``: release what was held back."""
        self.ids.extend(ids)
        if self._read == len(self.ids):
            return ""
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        if len(after) > len(before) and (final or not after.endswith("\ufffd")):
            self._prefix, self._read = self._read, len(self.ids)
            return after[len(before) :]
        return ""


class _Choice:
    """Per-choice stream state."""

    def __init__(self, tokenizer: Any) -> None:
        self.thinking = IncrementalText(tokenizer)
        self.solution = IncrementalText(tokenizer)


async def stream_events(
    pieces: AsyncIterator[StreamPiece], *, chat: bool, model: str, n: int, prompt_len: int, tokenizer: Any,
    special: SpecialTokens, include_usage: bool, with_ids: bool, think_end_text: str = "</think>",
    on_done: Callable[[BudgetedCompletion], None] | None = None,
) -> AsyncIterator[str]:
    """The SSE events of one request, ``data: [DONE]`` last.

    Args:
        pieces: the backend's pieces for the ``n`` samples (interleaved).
        chat: chat chunks (else completions chunks).
        model: the model id to report.
        n: number of choices.
        prompt_len: prompt tokens, for ``usage``.
        tokenizer: decodes the deltas.
        special: the protocol ids (``usage``'s reasoning count).
        include_usage: send the final ``usage`` event.
        with_ids: add ``token_ids`` to each event.
        think_end_text: the ``</think>`` text (completions' ``thinking_end`` event).
        on_done: called with each finished record (metrics).

    Yields:
        ``data: ...`` lines.

    """
    rid, created = new_id("chatcmpl" if chat else "cmpl"), now()
    kind = "chat.completion.chunk" if chat else "text_completion"
    state = [_Choice(tokenizer) for _ in range(n)]
    done: list[BudgetedCompletion | None] = [None] * n

    def event(index: int, delta: dict[str, Any] | str, ids: tuple[int, ...] = (), **extra: Any) -> str:
        choice: dict[str, Any] = {"index": index, "finish_reason": None, "logprobs": None, **extra}
        if chat:
            choice["delta"] = delta
        else:
            choice["text"] = delta
        if with_ids:
            choice["token_ids"] = list(ids)
        return sse({"id": rid, "object": kind, "created": created, "model": model, "choices": [choice]})

    def text_delta(text: str, field: str) -> dict[str, Any] | str:
        if not chat:
            return text
        return {"reasoning": text, "reasoning_content": text} if field == "thinking" else {"content": text}

    if chat:
        for i in range(n):
            yield event(i, {"role": "assistant", "content": ""})
    async for piece in pieces:
        st = state[piece.index]
        if piece.completion is not None:
            rec = piece.completion
            for field, dec in (("thinking", st.thinking), ("solution", st.solution)):
                rest = dec.push((), final=True)
                if rest:
                    yield event(piece.index, text_delta(rest, field))
            yield event(piece.index, {} if chat else "", finish_reason=finish_reason(rec),
                        thinking_truncated=rec.thinking_truncated)
            done[piece.index] = rec
            if on_done is not None:
                on_done(rec)
            continue
        if piece.kind == "think_end":
            rest = st.thinking.push((), final=True)
            if rest:
                yield event(piece.index, text_delta(rest, "thinking"))
            yield event(piece.index, {} if chat else think_end_text, piece.token_ids,
                        thinking_end={"forced": piece.forced})
            continue
        dec = st.thinking if piece.kind == "thinking" else st.solution
        text = dec.push(piece.token_ids)
        if text or with_ids:
            yield event(piece.index, text_delta(text, piece.kind), piece.token_ids)
    if include_usage:
        records = [r for r in done if r is not None]
        yield sse({"id": rid, "object": kind, "created": created, "model": model, "choices": [],
                   "usage": usage(prompt_len, records, special)})
    yield sse("[DONE]")
