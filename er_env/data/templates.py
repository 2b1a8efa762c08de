r"""Prompt templates: a :class:`~er_env.data.schema.Problem` -> chat messages -> token ids.

Two templates, as in the Elastic Reasoning paper's training and evaluation code:

- ``"deepscaler"`` (math): the problem followed by DeepScaleR's instruction
  ``Let's think step by step and output the final answer within \boxed{}.``
- ``"code"`` (LiveCodeBench / DeepCoder style): the statement, then a format
  section that asks for one fenced Python block, either completing the starter code
  (call-based and LeetCode problems) or reading stdin and writing stdout.

Messages are rendered with the tokenizer's own chat template
(``apply_chat_template(..., add_generation_prompt=True)``), so an R1-style template
ends the prompt with ``<｜Assistant｜><think>\n`` and the model starts thinking.
No system message is used: the R1-distill models the paper trains were tuned
without one. Stdlib only; the tokenizer is duck-typed.
"""

from __future__ import annotations

from typing import Any, Sequence

from er_env.data.schema import Problem

__all__ = [
    "MATH_INSTRUCTION",
    "TEMPLATES",
    "TemplateError",
    "build_messages",
    "code_user_message",
    "math_user_message",
    "render_prompt",
    "render_prompts",
]

#: DeepScaleR's math instruction, appended after the problem text.
MATH_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."

_CODE_INTRO = (
    "You are an expert Python programmer. You will be given a question (problem specification) and "
    "will write a correct Python program that matches the specification and passes all tests."
)
_CODE_FORMAT_STARTER = (
    "### Format: Write your solution by completing the starter code below, and enclose your code "
    "within delimiters.\n```python\n{starter}\n```"
)
_CODE_FORMAT_STDIO = (
    "### Format: Read the inputs from stdin, solve the problem and write the answer to stdout (do not "
    "test directly on the sample inputs). Enclose your code within delimiters as follows.\n"
    "```python\n# YOUR CODE HERE\n```"
)
_CODE_ANSWER = "### Answer: (use the provided format with backticks)"

#: template name -> task it applies to
TEMPLATES = {"deepscaler": "math", "code": "code"}


class TemplateError(ValueError):
    """A template cannot be applied (unknown name, wrong task, tokenizer without a chat template)."""


def math_user_message(problem: Problem) -> str:
    """The DeepScaleR user turn: ``"<problem> Let's think step by step and ..."``.

    Args:
        problem: a math problem.

    Returns:
        The user message text.
    """
    return f"{problem.question.strip()} {MATH_INSTRUCTION}"


def code_user_message(problem: Problem) -> str:
    """The LiveCodeBench/DeepCoder-style user turn for a code problem.

    A problem with ``metadata["starter_code"]`` (LeetCode, LCB call-based) asks the
    model to complete the starter code; otherwise (stdin/stdout) it asks for a full
    program. Statements that already end with their own format instructions
    (the LeetCode file embeds "Please complete the following python code") keep them.

    Args:
        problem: a code problem.

    Returns:
        The user message text.
    """
    starter = str(problem.metadata.get("starter_code") or "").strip()
    if starter and starter in problem.question:
        fmt = ""  # the statement already shows the starter code and asks for it
    elif starter:
        fmt = _CODE_FORMAT_STARTER.format(starter=starter)
    else:
        fmt = _CODE_FORMAT_STDIO
    parts = [_CODE_INTRO, f"### Question:\n{problem.question.strip()}"]
    if fmt:
        parts.append(fmt)
    parts.append(_CODE_ANSWER)
    return "\n\n".join(parts)


def build_messages(problem: Problem, template: str | None = None) -> list[dict[str, str]]:
    """Chat messages for a problem.

    Args:
        problem: the problem.
        template: ``"deepscaler"`` or ``"code"``; ``None`` picks the one for
            ``problem.task``.

    Returns:
        ``[{"role": "user", "content": ...}]``.

    Raises:
        TemplateError: unknown template, or a template for the other task.
    """
    name = template or ("deepscaler" if problem.task == "math" else "code")
    if name not in TEMPLATES:
        raise TemplateError(f"Unknown prompt template {name!r}; choose one of {sorted(TEMPLATES)}.")
    if TEMPLATES[name] != problem.task:
        raise TemplateError(
            f"Template {name!r} is for {TEMPLATES[name]} problems but {problem.id!r} is a {problem.task} problem."
        )
    content = math_user_message(problem) if name == "deepscaler" else code_user_message(problem)
    return [{"role": "user", "content": content}]


def render_prompt(problem: Problem, tokenizer: Any, template: str | None = None) -> tuple[str, list[int]]:
    """Apply the template and the tokenizer's chat template.

    Args:
        problem: the problem.
        tokenizer: a Hugging Face tokenizer with a chat template.
        template: see :func:`build_messages`.

    Returns:
        ``(prompt_text, prompt_ids)``; the ids are the text encoded without adding
        special tokens again (the chat template already holds BOS).

    Raises:
        TemplateError: the tokenizer has no chat template, or see :func:`build_messages`.
    """
    messages = build_messages(problem, template)
    if not getattr(tokenizer, "chat_template", None):
        raise TemplateError(
            f"Tokenizer {type(tokenizer).__name__} has no chat template; use a chat/reasoning model's tokenizer "
            "(e.g. an R1-distill one or `er tiny-model`'s) or set tokenizer.chat_template."
        )
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    return text, ids


def render_prompts(
    problems: Sequence[Problem], tokenizer: Any, template: str | None = None
) -> list[tuple[str, list[int]]]:
    """:func:`render_prompt` for each problem, in order."""
    return [render_prompt(p, tokenizer, template) for p in problems]
