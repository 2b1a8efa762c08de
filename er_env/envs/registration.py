"""Registration of the ``ElasticReasoning-*`` ids with Gymnasium.

Entry points are ``"module:Class"`` strings, so registering imports neither the
environment module nor any backend. Variants are kwargs on one class
(``task="math"`` / ``task="code"``), as ``LunarLanderContinuous`` is ``LunarLander``
with ``continuous=True``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ENV_IDS", "ENV_SPECS", "EnvRegistration", "register_envs"]

ENTRY_POINT = "er_env.envs.elastic_env:ElasticReasoningEnv"


@dataclass(frozen=True)
class EnvRegistration:
    """One registered id.

    Attributes:
        id: the Gymnasium id (``Name-vN``).
        kwargs: default constructor arguments (``gym.make`` kwargs override them).
    """

    id: str = field(metadata={"help": "Gymnasium id, Name-vN."})
    kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": "Default env kwargs."})


ENV_SPECS = (
    EnvRegistration("ElasticReasoning-Math-v0", {"task": "math", "tokenizer": "tiny"}),
    EnvRegistration("ElasticReasoning-Code-v0", {"task": "code", "tokenizer": "tiny"}),
)
ENV_IDS = tuple(spec.id for spec in ENV_SPECS)


def register_envs() -> None:
    """Register every ``ElasticReasoning-*`` id (idempotent).

    Called by ``import er_env``. Gymnasium >= 1.0 no longer loads entry-point
    plugins, so a plain
    ``import gymnasium`` user writes ``gym.make("er_env:ElasticReasoning-Math-v0")``
    (Gymnasium imports ``er_env`` first) or imports ``er_env`` once.
    """
    from gymnasium.envs.registration import register, registry

    for spec in ENV_SPECS:
        if spec.id not in registry:
            register(id=spec.id, entry_point=ENTRY_POINT, kwargs=dict(spec.kwargs), nondeterministic=False)
