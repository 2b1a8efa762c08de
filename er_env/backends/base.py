"""The interface every generation backend implements (stdlib only).

A backend turns token-id prompts into :class:`~er_env.budget.BudgetedCompletion`
records under a :class:`~er_env.budget.Budget`. Implementations:

- ``er_env.backends.hf``: Hugging Face transformers, batched, KV cache carried
  from the thinking phase into the solution phase.
- ``er_env.backends.vllm``: vLLM, one ``generate`` call per phase, prefix caching.
- ``er_env.backends.openai``: any OpenAI-compatible ``/v1/completions`` server.

Each drives one :class:`~er_env.budget.BudgetTracker` per sample, so the budget
rules live in ``er_env.budget`` alone. Heavy libraries are imported lazily inside the
backend modules; :func:`load_backend` resolves a backend by name.
"""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass, field
from typing import Any, Sequence

from er_env.budget import Budget, BudgetedCompletion, SpecialTokens

__all__ = [
    "BACKENDS", "Backend", "BackendError", "BackendUnavailable", "DependencyNotInstalled", "SamplingConfig",
    "load_backend",
]


class BackendError(RuntimeError):
    """A backend failed to generate (server unreachable, model error...)."""


class BackendUnavailable(BackendError):
    """The server could not be reached or kept failing (transport errors, 5xx): another one may answer."""


class DependencyNotInstalled(ImportError):
    """An optional dependency of a backend is missing; the message names the extra."""


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling settings shared by all backends.

    > Parameters that control sampling

    Attributes:
        temperature: 0 means greedy decoding.
        top_p: nucleus sampling mass.
        top_k: top-k cutoff (``-1``/``0``: off).
        seed: RNG seed for reproducible sampling (``None``: not seeded).
        logprobs: return the sampled token's logprob per token.
    """

    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature; 0 = greedy."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling probability mass."})
    top_k: int = field(default=-1, metadata={"help": "Top-k cutoff; -1 or 0 disables it."})
    seed: int | None = field(default=None, metadata={"help": "Seed for reproducible sampling."})
    logprobs: bool = field(default=True, metadata={"help": "Return per-token logprobs of sampled tokens."})

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"SamplingConfig.temperature must be >= 0, got {self.temperature}.")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingConfig.top_p must be in (0, 1], got {self.top_p}.")

    @property
    def greedy(self) -> bool:
        """Whether sampling is greedy (temperature 0)."""
        return self.temperature == 0


class Backend(abc.ABC):
    """Generates budgeted completions for batches of token-id prompts."""

    #: ids of ``</think>``, EOS and ``<think>`` for this backend's tokenizer
    special: SpecialTokens
    #: the model's context length, or ``None`` when unknown
    context_length: int | None = None

    @abc.abstractmethod
    def generate(
        self, prompts: Sequence[Sequence[int]], budget: Budget, sampling: SamplingConfig | None = None
    ) -> list[BudgetedCompletion]:
        """Run the two-phase protocol (or one unconstrained pass) for each prompt.

        Args:
            prompts: token ids, one list per sample (templates already applied).
            budget: the thinking/solution budgets.
            sampling: sampling settings (default: ``SamplingConfig()``).

        Returns:
            One finished record per prompt, in order.

        Raises:
            BudgetError: a prompt leaves no room in the model context.
            BackendError: generation failed; nothing partial is returned.
        """

    def chat_prompt(self, question: str | list[dict[str, str]]) -> list[int]:
        r"""Token ids of a chat-formatted prompt (generation prompt included).

        Args:
            question: the user message, or a full list of chat messages.

        Returns:
            The ids of the tokenizer's chat template applied with
            ``add_generation_prompt=True`` (for R1-distill models it ends with
            ``<｜Assistant｜><think>\n``).
        """
        messages = [{"role": "user", "content": question}] if isinstance(question, str) else question
        text = self.tokenizer.apply_chat_template(  # type: ignore[attr-defined]
            messages, tokenize=False, add_generation_prompt=True
        )
        return self.encode(text)

    def encode(self, text: str) -> list[int]:
        """Tokenize text without adding special tokens."""
        return list(self.tokenizer.encode(text, add_special_tokens=False))  # type: ignore[attr-defined]

    def decode(self, ids: Sequence[int]) -> str:
        """Detokenize ids, special tokens kept."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)  # type: ignore[attr-defined]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (servers, GPU memory)."""


#: name -> "module:Class", resolved lazily so importing this module loads no backend
BACKENDS = {
    "hf": "er_env.backends.hf:HFBackend",
    "vllm": "er_env.backends.vllm:VLLMBackend",
    "openai": "er_env.backends.openai:OpenAIBackend",
}


def load_backend(name: str, **kwargs: Any) -> Backend:
    """Instantiate a backend by name (``"hf"``, ``"vllm"``, ``"openai"``)."""
    if name not in BACKENDS:
        raise ValueError(f"Unknown backend {name!r}; choose one of {sorted(BACKENDS)}.")
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)
