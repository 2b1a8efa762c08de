r"""Evaluation prompts: the paper's math prompt and the official LiveCodeBench prompts.

- ``"deepscaler"`` (math default): ``"{problem} Let's think step by step and output
  the final answer within \boxed{}."`` (:data:`er_env.data.templates.MATH_INSTRUCTION`,
  the prompt of the official evaluation).
- ``"lcb"`` (code default): the LiveCodeBench prompt of the official code
  (``rllm/system_prompts.py`` and ``fetch_live_code_bench_system_prompt`` of
  SalesforceAIResearch/Elastic-Reasoning, from LiveCodeBench's
  ``lcb_runner/prompts/code_generation.py``): the generic system text, the
  statement, then the format section *with* starter code (call-based / LeetCode
  problems, ``metadata["starter_code"]``) or *without* (stdin/stdout), then the
  answer line, all in one user turn. One deviation: where the statement does not
  end with a newline, a blank line is put before ``### Format`` (the official
  concatenation relies on statements ending with one). Codeforces statements are
  used as given.
- ``"code"``: the training template of :mod:`er_env.data.templates`.

A method may append text to the user turn (the L1 length prompt); it goes after
the prompt above.
"""

from __future__ import annotations

from typing import Any

from er_env.data.schema import Problem
from er_env.data.templates import TemplateError, build_messages, math_user_message

__all__ = ["LCB_FORMAT_WITH_STARTER", "LCB_FORMAT_WITHOUT_STARTER", "LCB_SYSTEM", "PROMPTS", "eval_prompt",
           "lcb_user_message"]

LCB_SYSTEM = ("You are an expert Python programmer. You will be given a question (problem specification) and will "
              "generate a correct Python program that matches the specification and passes all tests.")
LCB_FORMAT_WITH_STARTER = ("You will use the following starter code to write the solution to the problem and "
                           "enclose your code within delimiters.")
LCB_FORMAT_WITHOUT_STARTER = (
    "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on the "
    "sample inputs). Enclose your code within delimiters as follows. Ensure that when the python program runs, it "
    "reads the inputs, runs the algorithm and writes output to STDOUT."
)

#: prompt name -> task it applies to ("auto": per task)
PROMPTS = {"auto": None, "deepscaler": "math", "lcb": "code", "code": "code"}


def lcb_user_message(problem: Problem) -> str:
    """The official LiveCodeBench user turn for a code problem.

    Args:
        problem: a code problem.

    Returns:
        The user message text.
    """
    question = problem.question
    text = LCB_SYSTEM + "\n\n" + question + ("" if question.endswith("\n") else "\n\n")
    starter = str(problem.metadata.get("starter_code") or "")
    if starter.strip():
        text += f"### Format: {LCB_FORMAT_WITH_STARTER}\n```python\n{starter}\n```\n\n"
    else:
        text += f"### Format: {LCB_FORMAT_WITHOUT_STARTER}\n```python\n# YOUR CODE HERE\n```\n\n"
    return text + "### Answer: (use the provided format with backticks)\n\n"


def eval_prompt(problem: Problem, tokenizer: Any, prompt: str = "auto", suffix: str = "") -> tuple[str, list[int]]:
    """Render a problem's evaluation prompt with the tokenizer's chat template.

    Args:
        problem: the problem.
        tokenizer: a HF tokenizer with a chat template.
        prompt: ``"auto"`` (``deepscaler`` for math, ``lcb`` for code),
            ``"deepscaler"``, ``"lcb"`` or ``"code"``.
        suffix: text appended to the user turn (a method's length prompt).

    Returns:
        ``(prompt_text, prompt_ids)``.

    Raises:
        TemplateError: unknown prompt name, a prompt for the other task, or a
            tokenizer without a chat template.
    """
    if prompt not in PROMPTS:
        raise TemplateError(f"Unknown prompt {prompt!r}; choose one of {sorted(PROMPTS)}.")
    name = prompt if prompt != "auto" else ("deepscaler" if problem.task == "math" else "lcb")
    if PROMPTS[name] != problem.task:
        raise TemplateError(f"Prompt {name!r} is for {PROMPTS[name]} problems but {problem.id!r} is {problem.task}.")
    if name == "deepscaler":
        content = math_user_message(problem)
    elif name == "lcb":
        content = lcb_user_message(problem)
    else:
        content = build_messages(problem, "code")[0]["content"]
    if not getattr(tokenizer, "chat_template", None):
        raise TemplateError(f"Tokenizer {type(tokenizer).__name__} has no chat template; use a chat model's tokenizer.")
    messages = [{"role": "user", "content": content + suffix}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text, list(tokenizer.encode(text, add_special_tokens=False))
