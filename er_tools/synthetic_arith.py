r"""A synthetic, verifiable reasoning task: sums of a few small integers, with long and short traces.

Each problem asks for the sum of 3 or 4 numbers from ``1..5`` (``What is 4 + 2 + 5?``);
its gold answer is the sum, graded by the project's math checker (the last
``\boxed{}`` after ``</think>``). For supervised fine-tuning, every problem has two
*correct* R1-style reasoning traces that compute the same running totals:

- :func:`short_trace`: the sum rewritten one addition at a time,
  ``4 + 2 + 5 = 6 + 5 = 11.``;
- :func:`long_trace`: the same additions written out redundantly (each one
  announced, the rest of the sum restated, the addition checked again), about three
  times as many tokens.

Both end with ``</think>``, then ``The answer is \boxed{11}.`` A model fine-tuned on a
mix that is mostly long (:func:`sft_documents`, ``long_fraction``) mostly thinks long;
when its thinking is cut at a budget well below the long length, the forced
``</think>`` comes before the last running total and the answer is wrong. This is the
miniature of the Elastic Reasoning setting (arXiv 2505.05315) that
``benchmarks/er_effect.py`` trains on with budget-constrained GRPO.

:func:`build_start_model` builds that fine-tuned start model with
:func:`er_tools.tiny_model.build_tiny_model` (its corpus replaced by these traces).
Problem sets are pure functions of their seed; :func:`make_splits` gives disjoint
train / evaluation sets.

Example:
    >>> train, test = make_splits(n_train=4, n_eval=2, seed=0)
    >>> train[0].question, train[0].answers
    ('What is 1 + 1 + 4 + 5?', ('11',))
    >>> print(short_trace([4, 2, 5]))
    4 + 2 + 5 = 6 + 5 = 11.
    </think>
    <BLANKLINE>
    The answer is \boxed{11}.

"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from er_env.data.schema import Problem
from er_env.data.templates import render_prompt
from er_tools.tiny_model import THINK_END

__all__ = [
    "ArithTaskConfig",
    "QUICK_PROBLEMS_FILE",
    "QUICK_START_MODEL",
    "QUICK_TASK",
    "START_MODEL_SETTINGS",
    "build_quick_task",
    "build_start_model",
    "completion",
    "long_trace",
    "make_problems",
    "make_splits",
    "problem_terms",
    "sft_documents",
    "short_trace",
    "train_start_model",
    "write_problems_jsonl",
]

SOURCE = "synthetic_arith"

#: :class:`~er_tools.tiny_model.TinyModelConfig` settings of the start model (the corpus is
#: replaced by :func:`sft_documents`; about 4 minutes on 2 CPU cores). 1600 steps, because at 800
#: the rarer short style was undertrained (28% right against 88% for the long one), which made
#: "think short" a losing trade for budget-constrained GRPO
START_MODEL_SETTINGS: dict[str, Any] = {
    "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 320, "corpus_size": 0, "train_steps": 1600, "batch_size": 16,
    "learning_rate": 3e-3,
}


@dataclass(frozen=True)
class ArithTaskConfig:
    """Shape of the sums.

    Attributes:
        min_terms: fewest numbers in a sum (>= 2).
        max_terms: most numbers in a sum.
        max_operand: numbers are drawn from ``1..max_operand`` (one digit: <= 9).

    """

    min_terms: int = field(default=3, metadata={"help": "Fewest numbers in a sum (>= 2)."})
    max_terms: int = field(default=4, metadata={"help": "Most numbers in a sum."})
    max_operand: int = field(default=5, metadata={"help": "Numbers are drawn from 1..max_operand (<= 9)."})

    def __post_init__(self) -> None:
        if not 2 <= self.min_terms <= self.max_terms:
            raise ValueError(f"Need 2 <= min_terms <= max_terms, got min_terms={self.min_terms}, "
                             f"max_terms={self.max_terms}.")
        if not 1 <= self.max_operand <= 9:
            raise ValueError(f"max_operand must be a one-digit number in 1..9, got {self.max_operand}.")


def _question(terms: Sequence[int]) -> str:
    return "What is " + " + ".join(map(str, terms)) + "?"


def _check_terms(terms: Sequence[int]) -> list[int]:
    out = [int(t) for t in terms]
    if len(out) < 2:
        raise ValueError(f"A sum needs at least two terms, got {list(terms)!r}.")
    return out


def _answer(total: int) -> str:
    return f"\n{THINK_END}\n\nThe answer is \\boxed{{{total}}}."


def _reductions(terms: Sequence[int]) -> list[tuple[int, int, int, list[int]]]:
    """Left-to-right steps: ``(a, b, a + b, the terms still to add)``."""
    terms = _check_terms(terms)
    out, total = [], terms[0]
    for i, t in enumerate(terms[1:], start=2):
        out.append((total, t, total + t, terms[i:]))
        total += t
    return out


def _expr(first: int, rest: Sequence[int]) -> str:
    return " + ".join(map(str, [first, *rest]))


def short_trace(terms: Sequence[int]) -> str:
    r"""Write the short correct completion: the sum rewritten one addition at a time, then the boxed sum.

    ``4 + 2 + 5 = 6 + 5 = 11.`` (each step adds the first two numbers and copies the
    rest, so the next number to add is always the one right after the running total).

    Raises:
        ValueError: fewer than two terms.

    """
    steps = _reductions(terms)
    parts = [_expr(terms[0], terms[1:])] + [_expr(c, rest) for _, _, c, rest in steps]
    return " = ".join(parts) + "." + _answer(steps[-1][2])


def long_trace(terms: Sequence[int]) -> str:
    r"""Write the long correct completion: each addition announced, the rest restated, the addition checked.

    Same steps as :func:`short_trace`, about three times the tokens.

    Raises:
        ValueError: fewer than two terms.

    """
    steps = _reductions(terms)
    parts = []
    for i, (a, b, c, rest) in enumerate(steps):
        restated = f", so the sum is {_expr(c, rest)}" if rest else ""
        parts.append(f"{'First' if i == 0 else 'Next'} {a} + {b} = {c}{restated}. Check: {a} + {b} = {c}.")
    parts.append(f"So the sum is {steps[-1][2]}.")
    return " ".join(parts) + _answer(steps[-1][2])


def completion(terms: Sequence[int], style: str) -> str:
    """:func:`long_trace` (``style="long"``) or :func:`short_trace` (``style="short"``).

    Raises:
        ValueError: another style, or fewer than two terms.

    """
    if style == "long":
        return long_trace(terms)
    if style == "short":
        return short_trace(terms)
    raise ValueError(f"style must be 'long' or 'short', got {style!r}.")


def _draw(rng: random.Random, cfg: ArithTaskConfig) -> tuple[int, ...]:
    n = rng.randint(cfg.min_terms, cfg.max_terms)
    return tuple(rng.randint(1, cfg.max_operand) for _ in range(n))


def make_problems(n: int, seed: int = 0, *, split: str = "train", config: ArithTaskConfig | None = None,
                  exclude: Sequence[Problem] = ()) -> list[Problem]:
    """``n`` distinct sum problems, a pure function of the arguments.

    Args:
        n: number of problems.
        seed: RNG seed.
        split: name used in the ids (``synthetic_arith/<split>/<i>``).
        config: the sums' shape (default :class:`ArithTaskConfig`).
        exclude: problems whose sums must not reappear (e.g. the training set).

    Returns:
        Math :class:`~er_env.data.schema.Problem` rows; ``metadata["terms"]`` holds the numbers.

    Raises:
        ValueError: ``n`` < 1, or fewer than ``n`` distinct sums are possible.

    """
    cfg = config or ArithTaskConfig()
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}.")
    possible = sum(cfg.max_operand ** k for k in range(cfg.min_terms, cfg.max_terms + 1))
    seen = {tuple(p.metadata.get("terms", ())) for p in exclude}
    if n > possible - len(seen):
        raise ValueError(f"Asked for {n} distinct sums but the config allows only {possible - len(seen)} "
                         "(after exclusions); raise max_terms or max_operand.")
    rng = random.Random(f"{SOURCE}/{split}/{seed}")
    problems: list[Problem] = []
    while len(problems) < n:
        terms = _draw(rng, cfg)
        if terms in seen:
            continue
        seen.add(terms)
        problems.append(Problem(id=f"{SOURCE}/{split}/{len(problems)}", task="math", question=_question(terms),
                                answers=(str(sum(terms)),), source=SOURCE, metadata={"terms": list(terms)}))
    return problems


def make_splits(n_train: int, n_eval: int, seed: int = 0,
                config: ArithTaskConfig | None = None) -> tuple[list[Problem], list[Problem]]:
    """Disjoint training and evaluation problems (no sum appears in both).

    Raises:
        ValueError: see :func:`make_problems`.

    """
    train = make_problems(n_train, seed, split="train", config=config)
    return train, make_problems(n_eval, seed, split="eval", config=config, exclude=train)


def problem_terms(problem: Problem) -> list[int]:
    """The numbers of a sum problem (``metadata["terms"]``).

    Raises:
        ValueError: the problem was not built by :func:`make_problems`.

    """
    terms = problem.metadata.get("terms")
    if not terms:
        raise ValueError(f"Problem {problem.id!r} has no metadata['terms']; build it with make_problems().")
    return [int(t) for t in terms]


def sft_documents(problems: Sequence[Problem], long_fraction: float = 0.8, seed: int = 0,
                  tokenizer: Any = None) -> list[str]:
    """Fine-tuning texts: each problem's rendered prompt, a long or short trace, and EOS.

    Args:
        problems: problems from :func:`make_problems`.
        long_fraction: probability that a document uses :func:`long_trace`.
        seed: RNG seed of the long/short draws.
        tokenizer: renders the prompt with its chat template (default: the tiny
            model's template, which :func:`build_start_model` saves with the model).

    Returns:
        One document per problem.

    Raises:
        ValueError: ``long_fraction`` outside ``[0, 1]``, or a problem without terms.

    """
    from er_tools.demo_model import TemplateOnlyTokenizer
    from er_tools.tiny_model import EOS

    if not 0.0 <= long_fraction <= 1.0:
        raise ValueError(f"long_fraction must be in [0, 1], got {long_fraction!r}.")
    tok = tokenizer if tokenizer is not None else TemplateOnlyTokenizer()
    rng = random.Random(f"{SOURCE}/sft/{seed}")
    docs = []
    for p in problems:
        style = "long" if rng.random() < long_fraction else "short"
        docs.append(render_prompt(p, tok)[0] + completion(problem_terms(p), style) + EOS)
    return docs


def build_start_model(out_dir: str | Path, problems: Sequence[Problem], *, long_fraction: float = 0.8,
                      seed: int = 0, **overrides: Any) -> Path:
    """Fine-tune the tiny model on :func:`sft_documents` of ``problems`` (mostly long traces).

    Args:
        out_dir: directory to write (a Hugging Face checkpoint + tokenizer).
        problems: fine-tuning problems.
        long_fraction: share of long traces.
        seed: seed of the trace draws, weights and training order.
        **overrides: :class:`~er_tools.tiny_model.TinyModelConfig` fields replacing
            :data:`START_MODEL_SETTINGS` (e.g. ``train_steps=200`` for a quick model).

    Returns:
        ``out_dir``.

    Raises:
        RuntimeError: the saved tokenizer renders prompts unlike the training texts.

    """
    docs = sft_documents(problems, long_fraction, seed)
    return train_start_model(out_dir, problems, docs, seed=seed, **{**START_MODEL_SETTINGS, **overrides})


def train_start_model(out_dir: str | Path, problems: Sequence[Problem], documents: Sequence[str], *, seed: int = 0,
                      **settings: Any) -> Path:
    """Fine-tune the tiny model on ``documents`` (rendered prompts of ``problems`` + completions + EOS).

    The step shared by this module's and :mod:`er_tools.synthetic_verify`'s start models.

    Args:
        out_dir: directory to write (a Hugging Face checkpoint + tokenizer).
        problems: the problems the documents were rendered from (the first one checks the template).
        documents: the training texts.
        seed: seed of the weights and training order.
        **settings: :class:`~er_tools.tiny_model.TinyModelConfig` fields.

    Returns:
        ``out_dir``.

    Raises:
        RuntimeError: the saved tokenizer renders prompts unlike the training texts.

    """
    from transformers import AutoTokenizer

    from er_tools.tiny_model import build_tiny_model

    docs = list(documents)
    out = build_tiny_model(out_dir, seed=seed, extra_documents=docs, **settings)
    tok = AutoTokenizer.from_pretrained(str(out))
    text, ids = render_prompt(problems[0], tok)
    if not docs[0].startswith(text) or tok.encode(docs[0], add_special_tokens=False)[: len(ids)] != ids:
        raise RuntimeError(f"Training text of {problems[0].id!r} does not start with the rendered prompt.")
    return out


def write_problems_jsonl(problems: Sequence[Problem], path: str | Path) -> Path:
    """Write problems in the Problem schema, one JSON object a line (``er train``'s ``dataset:`` reads it).

    Returns:
        The path written (parent directories are created).

    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in problems), encoding="utf-8")
    return path


#: the quick sums of the first training run (``er tiny-model --task sums``) and of
#: tests/trainers/test_er_effect.py: 2-3 numbers from 1..3
QUICK_TASK = ArithTaskConfig(min_terms=2, max_terms=3, max_operand=3)
#: a smaller start model than :data:`START_MODEL_SETTINGS` (about 40 s on 2 CPU cores)
QUICK_START_MODEL: dict[str, Any] = {"hidden_size": 64, "intermediate_size": 128, "train_steps": 600}
#: the file next to a quick start model holding the problems it was fine-tuned on
QUICK_PROBLEMS_FILE = "train.jsonl"


def build_quick_task(out_dir: str | Path, seed: int = 0, n_problems: int = 24) -> Path:
    """A quick start model for a first GRPO run that visibly learns, with its training problems.

    ``n_problems`` sums of :data:`QUICK_TASK`, 8 fine-tuning documents each, 70% long traces
    (34 or 70 thinking tokens) and 30% short ones (8 or 17), all correct: unconstrained the model
    is right in either style almost always, and at a thinking budget of 20 tokens every long trace
    is cut before its answer, so budget-constrained GRPO has something to learn within a dozen
    steps (trainers/recipes/first_run_cpu.yaml).

    Args:
        out_dir: directory of the model; the problems go to ``out_dir/train.jsonl``.
        seed: seed of the problems, traces, weights and training order.
        n_problems: number of training problems (>= 1).

    Returns:
        ``out_dir``.

    Raises:
        ValueError: ``n_problems`` < 1.

    """
    if n_problems < 1:
        raise ValueError(f"n_problems must be >= 1, got {n_problems}.")
    problems = make_problems(n_problems, seed=seed, config=QUICK_TASK)
    out = build_start_model(out_dir, problems * 8, long_fraction=0.7, seed=seed, **QUICK_START_MODEL)
    write_problems_jsonl(problems, Path(out) / QUICK_PROBLEMS_FILE)
    return Path(out)
