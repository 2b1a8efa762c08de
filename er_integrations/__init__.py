"""Elastic Reasoning from other RL stacks: one module per stack, above ``er_env`` and ``sandbox``.

Each module imports its framework lazily (inside the functions and classes that need it), so
importing this package or one of its modules costs nothing until a stack's hook is used; each
stack has its own extra (``pip install 'elastic-reasoning-gym[openenv]'`` and so on). Nothing in
``er_env``, ``sandbox`` or ``trainers`` imports this package.

Every integration is a thin translation: the budget rules come from :mod:`er_env.budget`, the
``</think>``/EOS ids from :mod:`er_env.tokens`, the grades from the project's reward client
(:mod:`er_env.rewards`, in-process or a reward-cluster URL). Modules:

- :mod:`er_integrations.openenv`: an OpenEnv ``Environment`` server over the Gymnasium episode.
- :mod:`er_integrations.skyrl`: a skyrl-gym ``BaseTextEnv`` registered as ``elastic_reasoning``.
- :mod:`er_integrations.verifiers`: a verifiers v1 taskset whose reward is the project's graders, and a
  harness whose model call is the two-phase protocol over ``/v1/completions`` (``load_environment``).
- :mod:`er_integrations.openrlhf`: an OpenRLHF ``AgentExecutor`` making the two calls on its vLLM engine;
  :mod:`er_integrations.openrlhf_reward`: OpenRLHF's remote-reward contract on the reward service.
- :mod:`er_integrations.verl`: ``compute_score`` and the parquet export; :mod:`er_integrations.verl_agent`:
  the ``elastic_reasoning`` agent loop.
- :mod:`er_integrations._phases`: the one helper every token-in stack's two calls go through.
- :mod:`er_integrations.conformance`: the kit every generating integration is tested with (its ids,
  masks, counts and ``thinking_truncated`` equal er_env's own backend); stdlib + ``er_env`` only.
"""
