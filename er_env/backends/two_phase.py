"""Request-level driver of the budget protocol for engines that generate whole phases.

Server-style engines (vLLM's ``LLM.generate``, an OpenAI-compatible
``/v1/completions`` server) take a prompt, a token cap and stop ids, and return a
finished token sequence. :class:`PhaseDriver` turns the per-sample
:class:`~er_env.budget.BudgetTracker` state into such requests and feeds the
answers back; the trackers alone decide what is kept, when ``</think>`` is forced
and when a sample is done. Used by ``er_env.backends.vllm`` and
``er_env.backends.openai``; stdlib only.

A constrained sample takes two rounds: the thinking phase (at most
``tracker.remaining()`` tokens, stop at ``</think>`` or EOS), then the solution
phase from ``tracker.solution_prefix()`` (at most ``tracker.remaining()`` tokens,
stop at EOS). An unconstrained sample takes one round that stops at EOS only.

With ``native_thinking_budget=True`` the thinking request instead asks the engine
to cap thinking itself (vLLM's ``thinking_token_budget``) and to go on into the
solution in the same call. The tracker still applies the rules: where the engine's
tokens agree with the tracker's sequence (the engine forced the same ``</think>``
at the same place), the solution tokens after it are kept and no second call is
needed; otherwise the extra tokens are dropped and the solution is asked for
in a second round, as usual.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Sequence

from er_env.backends.base import BackendError
from er_env.budget import BudgetedCompletion, BudgetTracker, Phase

__all__ = ["PhaseDriver", "PhaseOutput", "PhaseRequest", "StreamCursor", "StreamPiece", "token_id_prompts"]


@dataclass(frozen=True)
class PhaseRequest:
    """One engine call for one sample.

    Attributes:
        prompt_ids: prompt plus the completion so far.
        max_tokens: the most new tokens to generate (``None``: up to the context).
        stop_token_ids: ids that end generation (kept in the output, as vLLM does).
        stop_strings: text that ends generation (only for a multi-token ``</think>``;
            the engine must keep the matched text's tokens in its output).
        thinking_token_budget: the engine-side thinking cap (native budget mode
            only), counted from the last ``<think>`` as vLLM counts it.
        sample_index: position of the sample in the caller's batch (for seeds).

    """

    prompt_ids: tuple[int, ...]
    max_tokens: int | None
    stop_token_ids: tuple[int, ...]
    stop_strings: tuple[str, ...] = ()
    thinking_token_budget: int | None = None
    sample_index: int = 0


@dataclass(frozen=True)
class PhaseOutput:
    """What the engine generated for one :class:`PhaseRequest`.

    Attributes:
        token_ids: generated ids, a stop id that ended generation included.
        logprobs: the sampled tokens' logprobs (aligned), or ``None``.
        finish_reason: the engine's reason (``"stop"``, ``"length"``...).

    """

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...] | None
    finish_reason: str | None


@dataclass(frozen=True)
class StreamPiece:
    """New completion ids of one sample, as a streaming engine delivered them.

    Attributes:
        index: the sample.
        kind: ``"thinking"`` (thinking tokens), ``"think_end"`` (the ``</think>`` ids,
            sampled or forced) or ``"solution"``; an empty piece of kind
            ``"solution"`` carries only :attr:`completion`.
        token_ids: the ids, in completion order.
        forced: the ids were forced by the protocol (a ``"think_end"`` piece the
            policy did not sample).
        completion: the sample's finished record, on its last piece only.

    """

    index: int
    kind: str
    token_ids: tuple[int, ...]
    forced: bool = False
    completion: BudgetedCompletion | None = None


class StreamCursor:
    """Turns a tracker's growing ``completion_ids`` into :class:`StreamPiece` records.

    Call :meth:`advance` after every feed: it returns the ids added since the last
    call, split where their kind changes (thinking, ``</think>``, solution). The
    tracker decides everything; the cursor only reads it.
    """

    def __init__(self, index: int, tracker: BudgetTracker) -> None:
        self.index = index
        self.tracker = tracker
        self._sent = 0
        self._forced = 0  # forced ids among the sent ones

    def advance(self, final: str | None = None) -> list[StreamPiece]:
        """The pieces added since the last call; with ``final`` (the decoded text) the last one.

        Args:
            final: once the tracker is done, its decoded completion: the returned list
                then ends with a piece carrying the finished record.

        Returns:
            Pieces in completion order (possibly none).

        """
        tracker = self.tracker
        ids, end = tracker.completion_ids, tracker.special.think_end
        new_forced = tracker.forced_since(self._sent)
        self._forced += sum(new_forced)
        boundary = tracker.thinking_tokens + self._forced  # ids up to and including </think>
        closed = tracker.phase is not Phase.THINKING and tuple(ids[max(0, boundary - len(end)) : boundary]) == end

        def kind(pos: int) -> tuple[str, bool]:
            if new_forced[pos - self._sent]:
                return "think_end", True
            if not closed or pos < boundary - len(end):
                return "thinking", False
            return ("solution" if pos >= boundary else "think_end"), False

        pieces: list[StreamPiece] = []
        start = self._sent
        for pos in range(self._sent, len(ids)):
            here = kind(pos)
            if pos + 1 == len(ids) or kind(pos + 1) != here:
                pieces.append(StreamPiece(self.index, here[0], tuple(ids[start : pos + 1]), here[1]))
                start = pos + 1
        self._sent = len(ids)
        if final is not None:
            pieces.append(StreamPiece(self.index, "solution", (), completion=tracker.result(text=final)))
        return pieces


def token_id_prompts(prompts: Sequence[Sequence[int]]) -> list[list[int]]:
    """Check that every prompt is a non-empty sequence of ints; return them as lists.

    Raises:
        TypeError: a prompt is text (the backends take token ids).
        ValueError: a prompt is empty or holds non-integers.

    """
    out = []
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, (str, bytes)):
            raise TypeError(f"prompts[{i}] is text ({prompt[:40]!r}); pass token ids, e.g. backend.encode(text).")
        ids = list(prompt)
        if not ids:
            raise ValueError(f"prompts[{i}] is empty; a prompt needs at least one token (e.g. the BOS id).")
        bad = [t for t in ids if isinstance(t, bool) or not isinstance(t, numbers.Integral)]
        if bad:
            raise ValueError(f"prompts[{i}] holds non-integer ids {bad[:5]}; pass token ids.")
        out.append([int(t) for t in ids])
    return out


def _tokens_after_last(seq: Sequence[int], start: Sequence[int], end: Sequence[int]) -> int:
    """How many tokens follow the last ``start`` in ``seq`` (0 if an ``end`` comes after it)."""

    def last(pattern: Sequence[int]) -> int:
        n = len(pattern)
        if not n:
            return -1
        for i in range(len(seq) - n, -1, -1):
            if list(seq[i : i + n]) == list(pattern):
                return i
        return -1

    s, e = last(start), last(end)
    if s < 0 or e > s:
        return 0
    return len(seq) - (s + len(start))


class PhaseDriver:
    """Drives a batch of trackers through engine calls: in rounds, or one sample at a time.

    Usage, a batched engine call per round (every sample's thinking, then every solution)::

        driver = PhaseDriver(trackers, think_end_text="</think>")
        while requests := driver.next_requests():
            driver.apply(engine(requests))

    or, with an engine that takes requests while it runs (continuous batching), a
    sample's next request as soon as its last one finished::

        for i in range(len(trackers)):
            submit(i, driver.request(i))          # None: nothing to send
        for i, out in finished_requests():        # as the engine finishes them
            driver.feed(i, out)
            submit(i, driver.request(i))

    Args:
        trackers: one per sample, freshly built.
        think_end_text: the delimiter's text, used as a stop string when
            ``</think>`` spans several tokens.
        native_thinking_budget: ask the engine to cap thinking itself (see module
            docstring).
        max_rounds: a guard on engine calls per sample; a sample still unfinished
            after it is ended with ``finish_reason="length"``.

    """

    def __init__(
        self,
        trackers: Sequence[BudgetTracker],
        think_end_text: str = "</think>",
        *,
        native_thinking_budget: bool = False,
        max_rounds: int = 8,
    ) -> None:
        self.trackers = list(trackers)
        self.think_end_text = think_end_text
        self.native_thinking_budget = native_thinking_budget
        self.max_rounds = max_rounds
        self._pending: list[int] = []
        self._sent = [0] * len(self.trackers)  # requests sent per sample (the max_rounds guard)
        self._stop_strings: dict[int, bool] = {}  # samples with a request in flight -> it used stop strings
        self._phase_at_request: dict[int, Phase] = {}  # samples with a request in flight -> phase when sent
        self._kept: dict[int, int] = {}  # streamed requests: ids kept so far

    def next_requests(self) -> list[PhaseRequest]:
        """Build the requests of every unfinished sample; empty when all are done."""
        self._pending, requests = [], []
        for i in range(len(self.trackers)):
            req = self.request(i)
            if req is not None:
                self._pending.append(i)
                requests.append(req)
        return requests

    def request(self, index: int) -> PhaseRequest | None:
        """The next request of sample ``index`` alone, or ``None`` when it is done.

        For engines that take requests one at a time (a sample's solution request can
        be sent the moment its thinking finishes, while other samples still think):
        each answer goes back through :meth:`feed`. A sample past ``max_rounds``
        requests is ended with ``finish_reason="length"``.
        """
        tracker = self.trackers[index]
        if not tracker.done and self._sent[index] >= self.max_rounds:
            tracker.finish("length")
        if tracker.done:
            return None
        self._sent[index] += 1
        req = self._request(index, tracker)
        self._stop_strings[index] = bool(req.stop_strings)
        self._phase_at_request[index] = tracker.phase
        return req

    def feed(self, index: int, out: PhaseOutput) -> None:
        """Feed the engine's answer to the last :meth:`request` of sample ``index``.

        Raises:
            ValueError: sample ``index`` has no request in flight.

        """
        if index not in self._stop_strings:
            raise ValueError(f"Sample {index} has no request in flight.")
        self._phase_at_request.pop(index, None)
        _feed(self.trackers[index], out, self._stop_strings.pop(index))

    def feed_piece(self, index: int, token_ids: Sequence[int], logprobs: Sequence[float] | None = None) -> int:
        """Feed part of a streamed answer to the last :meth:`request` of sample ``index``.

        For engines that stream a phase token by token: each piece goes to the tracker as
        it arrives (the tracker keeps what the budget allows); :meth:`end_stream` closes
        the request once the engine says why it stopped. Streaming does not combine with
        ``native_thinking_budget``.

        Returns:
            How many of the ids the tracker kept.

        Raises:
            ValueError: sample ``index`` has no request in flight.

        """
        if index not in self._stop_strings:
            raise ValueError(f"Sample {index} has no request in flight.")
        tracker = self.trackers[index]
        if tracker.done or tracker.phase is not self._phase_at_request.get(index, tracker.phase):
            return 0  # the phase already ended: later ids were conditioned on a prefix that no longer exists
        kept = tracker.feed(token_ids, logprobs)
        self._kept[index] = self._kept.get(index, 0) + kept
        return kept

    def end_stream(self, index: int, finish_reason: str | None) -> None:
        """Close the streamed request of sample ``index``; ``finish_reason`` is the engine's.

        Raises:
            ValueError: sample ``index`` has no request in flight.
            BackendError: the engine stopped for no protocol reason (see :meth:`feed`).

        """
        if index not in self._stop_strings:
            raise ValueError(f"Sample {index} has no request in flight.")
        used_stop_strings = self._stop_strings.pop(index)
        phase = self._phase_at_request.pop(index)
        _close_phase(self.trackers[index], phase, self._kept.pop(index, 0), finish_reason, used_stop_strings)

    def _request(self, index: int, tracker: BudgetTracker) -> PhaseRequest:
        special = tracker.special
        eos = tuple(sorted(special.eos))
        prefix = tuple(tracker.solution_prefix())
        thinking = tracker.budget.constrained and tracker.phase is Phase.THINKING
        if not thinking:
            return PhaseRequest(prefix, tracker.remaining(), eos, sample_index=index)
        think_left = tracker.remaining()
        if self.native_thinking_budget:
            solution = tracker.budget.solution
            cap = None if solution is None or think_left is None else think_left + len(special.think_end) + solution
            already = _tokens_after_last(prefix, special.think_start, special.think_end)
            return PhaseRequest(prefix, cap, eos, thinking_token_budget=(think_left or 0) + already, sample_index=index)
        if len(special.think_end) == 1:
            return PhaseRequest(prefix, think_left, special.think_end + eos, sample_index=index)
        return PhaseRequest(prefix, think_left, eos, stop_strings=(self.think_end_text,), sample_index=index)

    def apply(self, outputs: Sequence[PhaseOutput]) -> None:
        """Feed one engine answer per request from the last :meth:`next_requests`.

        Raises:
            ValueError: the number of outputs differs from the number of requests.

        """
        if len(outputs) != len(self._pending):
            raise ValueError(f"Got {len(outputs)} engine outputs for {len(self._pending)} requests.")
        for index, out in zip(self._pending, outputs, strict=True):
            self.feed(index, out)
        self._pending = []


def _feed(tracker: BudgetTracker, out: PhaseOutput, used_stop_strings: bool) -> None:
    """Feed one engine answer; end the sample when the engine stopped for no protocol reason."""
    ids, lps = list(out.token_ids), None if out.logprobs is None else list(out.logprobs)
    phase, before = tracker.phase, len(tracker.completion_ids)
    kept = tracker.feed(ids, lps)
    forced = tracker.completion_ids[before + kept :]
    if forced and not tracker.done and ids[kept : kept + len(forced)] == forced:
        # The engine produced exactly the forced ids at exactly this place (a native
        # thinking budget): what follows was conditioned on the tracker's own prefix.
        rest = kept + len(forced)
        tracker.feed(ids[rest:], None if lps is None else lps[rest:])
    _close_phase(tracker, phase, kept, out.finish_reason, used_stop_strings)


def _close_phase(
    tracker: BudgetTracker, phase: Phase, kept: int, finish_reason: str | None, used_stop_strings: bool
) -> None:
    """After an engine answer of ``kept`` ids sent in ``phase``: end the sample if the engine stopped early."""
    if tracker.done or tracker.phase is not phase:
        return
    if used_stop_strings and kept and finish_reason == "stop":
        return  # the stop text matched other ids than the delimiter's: ask again from here
    if finish_reason == "stop":
        ids = tracker.completion_ids
        raise BackendError(
            f"The engine stopped (finish_reason='stop') after ids {ids[-3:]}, none of which is </think> "
            f"{list(tracker.special.think_end)} or a known EOS id {sorted(tracker.special.eos)}. Pass "
            "eos_ids=[...] with every id that ends this model's sequences, and use a server that keeps the "
            "stop token in the returned ids (vLLM does)."
        )
    tracker.finish("length")  # the engine's own length limit (context) ended it
