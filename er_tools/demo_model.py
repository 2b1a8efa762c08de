r"""The demo's tiny model: the tiny R1-style model, also trained on the embedded problems.

``er demo`` needs a model that sometimes earns a reward, so that its tables show graded
successes and how reward and length move with the budget. A model trained for seconds
on CPU cannot solve anything, so :func:`build_demo_model` trains the tiny model of
:mod:`er_tools.tiny_model` on R1-style documents made from the embedded problems
themselves (:func:`demo_documents`): the exact chat-templated prompt the rollout
renders, a short restating "reasoning" of varying length, ``</think>``, and the gold
answer in ``\boxed{}`` (math) or the problem's reference solution in a fenced Python
block (code), then EOS. The model memorises these; its rewards demonstrate the
pipeline (templates, budget forcing, graders), not generalisation.

Example:
    >>> from er_tools.demo_model import build_demo_model  # doctest: +SKIP
    >>> build_demo_model("runs/demo/tiny-model")  # doctest: +SKIP

"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from er_env.data.schema import Problem
from er_env.data.templates import render_prompt
from er_tools.tiny_model import BOS, CHAT_TEMPLATE, EOS, THINK_END, build_tiny_model

__all__ = ["DEMO_MODEL_VERSION", "DEMO_MODEL_SETTINGS", "TemplateOnlyTokenizer", "build_demo_model", "demo_completion",
           "demo_documents", "is_demo_model"]

#: bump when the documents or settings change, so cached demo models are rebuilt
DEMO_MODEL_VERSION = 1
#: :class:`~er_tools.tiny_model.TinyModelConfig` overrides for the demo model
DEMO_MODEL_SETTINGS: dict[str, Any] = {
    "hidden_size": 96, "intermediate_size": 192, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 512, "corpus_size": 0, "train_steps": 300, "batch_size": 8,
    "learning_rate": 3e-3,
}
_MARKER = "er_demo_model.json"


class TemplateOnlyTokenizer:
    """Duck-typed tokenizer that only renders the tiny model's chat template (for prompt texts).

    Training texts must be written before the tiny model's tokenizer exists (the tokenizer is
    trained on them); this renders the prompt :func:`~er_env.data.templates.render_prompt` will
    produce with the saved tokenizer.
    """

    chat_template = CHAT_TEMPLATE

    def apply_chat_template(self, messages: Sequence[dict], tokenize: bool = False,
                            add_generation_prompt: bool = True) -> str:
        """Render ``messages`` with the tiny model's chat template (text only)."""
        import jinja2

        env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(self.chat_template).render(
            messages=messages, bos_token=BOS, eos_token=EOS, add_generation_prompt=add_generation_prompt)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """No ids: there is no vocabulary yet (only the prompt text is used)."""
        return []


def demo_completion(problem: Problem) -> str:
    r"""Write the R1-style gold completion of an embedded problem (after the ``<think>\n`` prompt).

    Math: a restatement of the question, ``</think>`` and the gold answer(s) in
    ``\boxed{}``. Code: a plan, ``</think>`` and ``metadata["reference_solution"]``
    in a fenced Python block.

    Raises:
        ValueError: a math problem without answers, or a code problem without a reference solution.

    """
    question = " ".join(problem.question.split())
    if problem.task == "math":
        if not problem.answers:
            raise ValueError(f"Math problem {problem.id!r} has no gold answers to train the demo model on.")
        answer = ", ".join(problem.answers) if problem.answers_required == "all" else problem.answers[0]
        return (f"The question: {question} I will work it out step by step and check the result. "
                f"It comes to {answer}.\n{THINK_END}\n\nThe answer is $\\boxed{{{answer}}}$.")
    solution = str(problem.metadata.get("reference_solution") or "").rstrip()
    if not solution:
        raise ValueError(f"Code problem {problem.id!r} has no metadata['reference_solution'] for the demo model.")
    first = " ".join(question.split(".")[0].split()[:10])
    return (f"The task: {first}. I will write a short program and check the examples."
            f"\n{THINK_END}\n\n```python\n{solution}\n```")


def demo_documents(problems: Sequence[Problem], tokenizer: Any = None) -> list[str]:
    """Training texts: each problem's rendered prompt followed by :func:`demo_completion` and EOS.

    Args:
        problems: the problems (math and code).
        tokenizer: tokenizer whose chat template renders the prompt (default: the tiny
            model's template, which the demo model is saved with).

    Returns:
        One document per problem.

    """
    tok = tokenizer if tokenizer is not None else TemplateOnlyTokenizer()
    return [render_prompt(p, tok)[0] + demo_completion(p) + EOS for p in problems]


def is_demo_model(path: str | Path) -> bool:
    """Whether ``path`` holds a demo model of the current :data:`DEMO_MODEL_VERSION`."""
    marker = Path(path) / _MARKER
    try:
        return json.loads(marker.read_text())["version"] == DEMO_MODEL_VERSION
    except (OSError, ValueError, KeyError, TypeError):
        return False


def build_demo_model(out_dir: str | Path, problems: Sequence[Problem] | None = None, seed: int = 0) -> Path:
    """Build the tiny model trained on the embedded problems (see the module docstring).

    Args:
        out_dir: directory to write.
        problems: problems to train on (default: all embedded math and code problems).
        seed: seed of the corpus, weights and training order.

    Returns:
        ``out_dir``.

    Raises:
        RuntimeError: the saved tokenizer renders prompts differently from the
            training documents (the documents would not match inference prompts).

    """
    from transformers import AutoTokenizer

    from er_env.data import load_problems

    if problems is None:
        problems = load_problems("embedded:math") + load_problems("embedded:code")
    docs = demo_documents(problems)
    out = build_tiny_model(out_dir, seed=seed, extra_documents=docs, **DEMO_MODEL_SETTINGS)
    tok = AutoTokenizer.from_pretrained(str(out))
    for problem, doc in zip(problems, docs, strict=True):
        text, ids = render_prompt(problem, tok)
        if not doc.startswith(text) or tok.encode(doc, add_special_tokens=False)[: len(ids)] != ids:
            raise RuntimeError(f"Demo training document of {problem.id!r} does not start with the rendered prompt.")
    (out / _MARKER).write_text(json.dumps({"version": DEMO_MODEL_VERSION, "problems": [p.id for p in problems]}))
    return out
