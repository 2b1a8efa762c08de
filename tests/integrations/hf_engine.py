"""A real engine for the integration tests: the tiny model's ``transformers`` ``generate`` (greedy).

Each stack's engine interface (OpenRLHF's ``llm_engine.generate``, verl's ``server_manager.generate``)
is adapted over :func:`hf_generate`, which stops on the request's stop ids and keeps the stop token,
as vLLM does, so a stack's rollout can be compared with er_env's own HF backend token for token.
"""

from __future__ import annotations

from typing import Any, Sequence


def hf_generate(backend: Any, prompt_ids: Sequence[int], max_tokens: int | None, stop_ids: Sequence[int]
                ) -> tuple[list[int], list[float], bool]:
    """Greedy ids, their logprobs, and whether a stop id ended generation."""
    import torch

    ids = torch.tensor([list(prompt_ids)])
    with torch.no_grad():
        out = backend.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                     max_new_tokens=max_tokens, eos_token_id=list(stop_ids),
                                     pad_token_id=backend.pad_id, output_scores=True, return_dict_in_generate=True)
    new = out.sequences[0, len(prompt_ids):].tolist()
    logprobs = [float(torch.log_softmax(step[0].float(), -1)[tok]) for step, tok in zip(out.scores, new, strict=True)]
    return new, logprobs, bool(new) and new[-1] in stop_ids
