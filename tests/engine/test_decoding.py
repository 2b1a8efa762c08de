"""The shared sampler of the HF backend and the dev server (er_env.backends.decoding)."""

from __future__ import annotations

import math

import pytest
import torch

from er_env.backends.base import SamplingConfig
from er_env.backends.decoding import filter_top_k_top_p, sample


def test_top_k_and_top_p_keep_exactly_the_expected_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    keep = lambda s: torch.isfinite(s)[0].tolist()  # noqa: E731
    assert keep(filter_top_k_top_p(logits, 2, 1.0)) == [True, True, False, False]
    assert keep(filter_top_k_top_p(logits, -1, 0.5)) == [True, False, False, False]  # 0.5 reached by the first
    assert keep(filter_top_k_top_p(logits, -1, 0.6)) == [True, True, False, False]  # the crossing token stays
    assert keep(filter_top_k_top_p(logits, 3, 0.99)) == [True, True, True, False]


def test_greedy_forced_and_seeded_sampling():
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 0.0]])
    toks, lps = sample(logits, SamplingConfig(temperature=0), None)
    assert toks == [1, 0] and lps[0] == pytest.approx(float(torch.log_softmax(logits[0], -1)[1]))
    toks, lps = sample(logits, SamplingConfig(temperature=0), None, forced=[2, None])
    assert toks == [2, 0] and lps[0] == pytest.approx(float(torch.log_softmax(logits[0], -1)[2]))
    cfg = SamplingConfig(temperature=0.7, top_p=0.9)
    a = sample(logits, cfg, torch.Generator().manual_seed(3))
    b = sample(logits, cfg, torch.Generator().manual_seed(3))
    assert a == b
    # the logprob is taken at the temperature, before filtering
    want = torch.log_softmax(logits / 0.7, -1)
    assert all(math.isclose(lp, float(want[r, t]), rel_tol=1e-5) for r, (t, lp) in enumerate(zip(*a)))
