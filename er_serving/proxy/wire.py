"""Wire schema of ``er proxy``: request bodies, OpenAI-style errors, response shapes.

Requests follow the OpenAI chat / completions APIs plus vLLM's extensions and this
proxy's budget fields (``thinking_token_budget`` (vLLM's name) or ``max_thinking_tokens``,
``solution_token_budget``, ``reasoning_effort``). Unknown fields are ignored, as OpenAI
servers do. Budget fields are typed loosely here and checked in
:mod:`er_serving.proxy.budgets`, so an error names the field and its valid range.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ApiError", "ChatRequest", "CompletionRequest", "error_body", "new_id"]

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          422: "unprocessable_entity_error", 429: "rate_limit_error", 503: "service_unavailable"}


class ApiError(Exception):
    """An answer that is not a completion: HTTP status, message, the field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The OpenAI error shape ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": _TYPES.get(status, "server_error"), "param": param,
                      "code": code or str(status)}}


def new_id(prefix: str) -> str:
    """A fresh response id such as ``chatcmpl-<hex>``."""
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    """Unix time, the ``created`` field."""
    return int(time.time())


class _Common(BaseModel):
    """Fields both endpoints take."""

    model_config = ConfigDict(extra="ignore")

    model: Optional[str] = None
    max_tokens: Any = None
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    top_k: Optional[int] = Field(None, ge=-1)
    seed: Optional[int] = None
    n: int = Field(1, ge=1, le=128)
    stream: bool = False
    stream_options: Optional[dict[str, Any]] = None
    stop: Optional[Union[str, list[str]]] = None
    logprobs: Any = None
    thinking_token_budget: Any = None
    max_thinking_tokens: Any = None
    solution_token_budget: Any = None
    reasoning_effort: Any = None
    return_token_ids: bool = False


class ChatRequest(_Common):
    """``POST /v1/chat/completions`` body."""

    messages: list[dict[str, Any]] = Field(min_length=1)
    max_completion_tokens: Any = None
    chat_template_kwargs: Optional[dict[str, Any]] = None


class CompletionRequest(_Common):
    """``POST /v1/completions`` body (one prompt: text or token ids)."""

    prompt: Union[str, list[int]]
