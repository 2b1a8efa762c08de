"""The shared helper of the token-in integrations (OpenRLHF, verl): refusals and trained spans."""

import pytest

from er_env.budget import Budget, BudgetError, SpecialTokens, TokenizerError
from er_integrations._phases import check_protocol, trained_spans
from sandbox.service.server import route_factories

ONE = SpecialTokens(think_end=(9,), eos=frozenset({2}))


def test_multi_token_think_end_is_refused_naming_the_fix():
    with pytest.raises(TokenizerError, match=r"encodes to 2 tokens \[7, 8\].*add_special_tokens"):
        check_protocol(SpecialTokens(think_end=(7, 8), eos=frozenset({2})), Budget(8, 8), None, "x")


def test_budgets_over_the_context_are_refused_naming_the_setting():
    with pytest.raises(BudgetError, match=r"--generate.max_len=2049\. Raise --generate.max_len above 2049"):
        check_protocol(ONE, Budget(1024, 1024), 2049, "--generate.max_len")
    check_protocol(ONE, Budget(1024, 1024), 4096, "--generate.max_len")


@pytest.mark.parametrize(("mask", "spans"), [((1, 1, 0, 1), [(10, 12), (13, 14)]), ((1, 1, 1), [(10, 13)]),
                                             ((0, 1), [(11, 12)]), ((), [])])
def test_trained_spans(mask, spans):
    assert trained_spans(mask, offset=10) == spans


def test_extra_routes_entry_that_does_not_import_names_the_form():
    with pytest.raises(ValueError, match="'nope:routes' does not import.*module:factory"):
        route_factories("nope:routes")
    assert route_factories(" , ") == []
