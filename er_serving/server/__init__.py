"""A small OpenAI-compatible completion server over Hugging Face transformers.

- ``generation``: :class:`~er_serving.server.generation.TransformersGenerator`, one
  sequence at a time with vLLM's stop/``token_ids`` semantics (no FastAPI).
- ``protocol``: the wire schema of ``/v1/completions`` and ``/v1/models``.
- ``openai_server``: :func:`~er_serving.server.openai_server.create_app`, the FastAPI
  shell (``POST /v1/completions``, ``GET /v1/models``, ``GET /health``).

Start it with ``er serve --model PATH`` (CPU development server; binds to
127.0.0.1). ``er_env.backends.openai.OpenAIBackend`` talks to it, to ``vllm serve``
and to other servers that return completion token ids.
"""
