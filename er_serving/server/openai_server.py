"""FastAPI shell: an OpenAI-compatible completion server over transformers.

Endpoints:

- ``POST /v1/completions``: token-id or text prompt (a batch of either is answered
  choice by choice), ``max_tokens``, ``temperature``, ``top_p``, ``top_k``,
  ``seed``, ``stop_token_ids``, ``stop``, ``logprobs``, ``return_token_ids``,
  ``return_tokens_as_token_ids``, ``thinking_token_budget``; ``n=1`` only, no
  echo. ``stream=true`` answers server-sent events in vLLM's chunk shape, but each
  choice comes whole in one event (the model decodes before anything is sent), then
  ``data: [DONE]``. Generation semantics are vLLM's (see
  :mod:`er_serving.server.generation`). With ``logprobs``, ``top_logprobs`` holds only
  the sampled token (alternatives are not computed).
- ``GET /v1/models``: the one served model, with ``max_model_len``.
- ``GET /health``: 200 once the model is loaded.

Bad requests get 400 (404 for an unknown model name) with an OpenAI-style
``{"error": {"message", "type", "code"}}`` body; a failure inside generation gets 500.
Requests are served one at a time (CPU development server).

Example:
    >>> from er_serving.server.openai_server import create_app, load_generator  # doctest: +SKIP
    >>> app = create_app(load_generator("/tmp/tiny-r1"), model_name="tiny")  # doctest: +SKIP

"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from er_serving.server.generation import GenerationParams, GenerationResult, TransformersGenerator
from er_serving.server.protocol import (
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    ModelCard,
    ModelList,
    Usage,
)

__all__ = ["create_app", "load_generator"]


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> JSONResponse:
    kind = {400: "BadRequestError", 404: "NotFoundError"}.get(status, "InternalServerError")
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": status}}, status)


def load_generator(model: str, *, device: str = "cpu", dtype: str = "float32") -> TransformersGenerator:
    """Load a local model directory (or hub name) into a :class:`TransformersGenerator`.

    Raises:
        ValueError: ``dtype`` names no torch dtype.
        OSError: the model or tokenizer cannot be loaded.

    """
    import torch
    import transformers

    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ValueError(f"Unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16' or 'float16'.")
    tokenizer = transformers.AutoTokenizer.from_pretrained(model)
    from er_env.quiet import quiet_model_loading

    with quiet_model_loading():
        lm = transformers.AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype).to(device)
    return TransformersGenerator(lm, tokenizer)


def _prompts(req: CompletionRequest, generator: TransformersGenerator) -> list[list[int]]:
    prompt: Any = req.prompt
    if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
        prompt = [prompt]
    if not prompt:
        raise _ApiError(400, "prompt is empty; send text or a list of token ids.")
    tok = generator.tokenizer
    return [tok.encode(p) if isinstance(p, str) else [int(t) for t in p] for p in prompt]


def _params(req: CompletionRequest) -> GenerationParams:
    if req.n != 1:
        raise _ApiError(400, f"n={req.n} is not supported; send one request per sample (n=1).")
    if req.echo:
        raise _ApiError(400, "echo=true is not supported; the prompt ids come back with return_token_ids=true.")
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if any(not s for s in stop):
        raise _ApiError(400, "stop cannot contain an empty string.")
    budget = req.thinking_token_budget
    return GenerationParams(
        max_tokens=req.max_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=req.top_k or 0,
        seed=req.seed,
        stop_token_ids=tuple(req.stop_token_ids or ()),
        stop=tuple(stop),
        include_stop_str_in_output=req.include_stop_str_in_output,
        ignore_eos=req.ignore_eos,
        skip_special_tokens=req.skip_special_tokens,
        thinking_token_budget=None if budget is None or budget < 0 else budget,
    )


def _logprobs_block(res: GenerationResult, as_ids: bool, tokenizer: Any) -> CompletionLogprobs:
    tokens = [f"token_id:{t}" if as_ids else tokenizer.decode([t]) for t in res.token_ids]
    offsets, pos = [], 0
    for text in tokens:
        offsets.append(pos)
        pos += len(text)
    return CompletionLogprobs(
        text_offset=offsets,
        token_logprobs=list(res.logprobs),
        tokens=tokens,
        top_logprobs=[{t: lp} for t, lp in zip(tokens, res.logprobs, strict=True)],
    )


def _complete(req: CompletionRequest, generator: TransformersGenerator, name: str) -> CompletionResponse:
    if req.model is not None and req.model != name:
        raise _ApiError(404, f"The model `{req.model}` does not exist; this server serves `{name}` (GET /v1/models).")
    params = _params(req)
    choices, n_prompt, n_out = [], 0, 0
    for i, prompt in enumerate(_prompts(req, generator)):
        try:
            res = generator.generate(prompt, params)
        except ValueError as exc:
            raise _ApiError(400, str(exc)) from exc
        logprobs = None
        if req.logprobs is not None:
            logprobs = _logprobs_block(res, bool(req.return_tokens_as_token_ids), generator.tokenizer)
        choices.append(
            CompletionChoice(
                index=i,
                text=res.text,
                logprobs=logprobs,
                finish_reason=res.finish_reason,
                stop_reason=res.stop_reason,
                token_ids=list(res.token_ids) if req.return_token_ids else None,
                prompt_token_ids=prompt if req.return_token_ids else None,
            )
        )
        n_prompt, n_out = n_prompt + len(prompt), n_out + len(res.token_ids)
    usage = Usage(prompt_tokens=n_prompt, completion_tokens=n_out, total_tokens=n_prompt + n_out)
    return CompletionResponse(model=name, choices=choices, usage=usage)


def _events(res: CompletionResponse) -> Any:
    """A finished response as server-sent events: one chunk per choice, then ``[DONE]``."""
    for choice in res.choices:
        chunk = res.model_copy(update={"choices": [choice]}).model_dump(exclude={"usage"})
        yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"


def create_app(generator: TransformersGenerator, model_name: str) -> FastAPI:
    """Build the FastAPI app serving ``generator`` under ``model_name``.

    Args:
        generator: the loaded model (see :func:`load_generator`).
        model_name: the id clients send as ``model`` and see in ``/v1/models``.

    Returns:
        The app, ready for ``uvicorn.run(app, ...)`` or ``TestClient(app)``.

    """
    app = FastAPI(title="er-env OpenAI-compatible completion server", version="1")

    @app.exception_handler(_ApiError)
    async def _api_error(_: Request, exc: _ApiError) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, f"Invalid request: {exc.errors()}")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models", response_model=ModelList)
    def models() -> ModelList:
        return ModelList(data=[ModelCard(id=model_name, root=model_name, max_model_len=generator.max_model_len)])

    @app.post("/v1/completions", response_model=CompletionResponse, response_model_exclude_none=False)
    def completions(req: CompletionRequest) -> Any:
        try:
            res = _complete(req, generator, model_name)
        except _ApiError:
            raise
        except Exception as exc:  # a model failure is the server's fault, never the client's
            raise _ApiError(500, f"generation failed: {type(exc).__name__}: {exc}") from exc
        return StreamingResponse(_events(res), media_type="text/event-stream") if req.stream else res

    return app
