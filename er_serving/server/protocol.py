"""Wire schema of the OpenAI-compatible endpoints (the subset this server speaks).

Field names and response shapes follow vLLM's ``/v1/completions`` (its extensions
included: ``stop_token_ids``, ``top_k``, ``return_token_ids``,
``return_tokens_as_token_ids``, ``include_stop_str_in_output``,
``skip_special_tokens``, ``thinking_token_budget``; per-choice ``token_ids``,
``prompt_token_ids`` and ``stop_reason``; ``max_model_len`` on model cards).
Unknown request fields are ignored, as OpenAI servers do.
"""

from __future__ import annotations

import time
import uuid
from typing import Optional, Union

from pydantic import BaseModel, Field

__all__ = [
    "CompletionChoice",
    "CompletionLogprobs",
    "CompletionRequest",
    "CompletionResponse",
    "ModelCard",
    "ModelList",
    "Usage",
]


class CompletionRequest(BaseModel):
    """``POST /v1/completions`` body."""

    model: Optional[str] = None
    prompt: Union[str, list[int], list[str], list[list[int]]]
    max_tokens: Optional[int] = Field(16, ge=1)
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    top_k: Optional[int] = Field(None, ge=-1)
    seed: Optional[int] = None
    n: int = 1
    stream: bool = False
    echo: bool = False
    logprobs: Optional[int] = Field(None, ge=0, le=20)
    stop: Optional[Union[str, list[str]]] = None
    stop_token_ids: Optional[list[int]] = None
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    return_token_ids: Optional[bool] = None
    return_tokens_as_token_ids: Optional[bool] = None
    thinking_token_budget: Optional[int] = Field(None, ge=-1)


class CompletionLogprobs(BaseModel):
    """Legacy completions logprobs block (one entry per generated token)."""

    text_offset: list[int]
    token_logprobs: list[Optional[float]]
    tokens: list[str]
    top_logprobs: list[Optional[dict[str, float]]]


class CompletionChoice(BaseModel):
    """One generated sequence."""

    index: int
    text: str
    logprobs: Optional[CompletionLogprobs] = None
    finish_reason: Optional[str] = None
    stop_reason: Optional[Union[int, str]] = None
    token_ids: Optional[list[int]] = None
    prompt_token_ids: Optional[list[int]] = None


class Usage(BaseModel):
    """Token counts of a response."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class CompletionResponse(BaseModel):
    """``POST /v1/completions`` answer."""

    id: str = Field(default_factory=lambda: f"cmpl-{uuid.uuid4().hex}")
    object: str = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class ModelCard(BaseModel):
    """One served model (``max_model_len`` as vLLM reports it)."""

    id: str
    object: str = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "er-env"
    root: Optional[str] = None
    max_model_len: Optional[int] = None


class ModelList(BaseModel):
    """``GET /v1/models`` answer."""

    object: str = "list"
    data: list[ModelCard]
