"""SkyRL: the `elastic_reasoning` BaseTextEnv made and stepped through the real skyrl-gym."""

import pytest

from er_env.budget import BudgetError
from er_env.data import load_problems
from er_env.data.schema import ProblemError
from tests.conftest import require

try:  # collected in every venv; only .venv has skyrl-gym (the fixture below skips, or fails in CI)
    import skyrl_gym

    from er_integrations.skyrl import ENV_ID, ElasticReasoningTextEnv, dataset_rows, register_env
except ImportError:  # pragma: no cover - depends on the venv
    skyrl_gym = None


@pytest.fixture(autouse=True)
def _needs_skyrl_gym():
    require(skyrl_gym is not None, "skyrl-gym is not installed (make venv: pip install -e '.[skyrl]')")


@pytest.fixture(scope="module")
def problems():
    register_env()
    return load_problems("embedded:math")[:3]


def test_make_and_step_grade_with_the_projects_math_checker(problems):
    rows = dataset_rows(problems)
    assert {r["env_class"] for r in rows} == {ENV_ID}
    env = skyrl_gym.make(ENV_ID, env_config={"think_budget_tokens": 16, "solution_budget_tokens": 8},
                         extras=rows[0]["extras"])
    assert isinstance(env, ElasticReasoningTextEnv)
    prompt, meta = env.init(rows[0]["prompt"])
    assert prompt == rows[0]["prompt"] and problems[0].question in prompt[-1]["content"]
    gold = problems[0].answers[0]
    out = env.step(f"let me add </think> The answer is \\boxed{{{gold}}}.")
    assert out["done"] is True and out["reward"] == 1.0 and out["metadata"]["verdict"] == "correct"
    assert out["metadata"]["think_budget_tokens"] == 16
    assert env.get_metrics()["correct"] == 1.0
    wrong = skyrl_gym.make(ENV_ID, env_config={}, extras=rows[1]["extras"])
    out = wrong.step("</think> \\boxed{-123456}")
    assert out["reward"] == 0.0 and out["metadata"]["verdict"] == "wrong"
    assert ElasticReasoningTextEnv.aggregate_metrics([env.get_metrics(), wrong.get_metrics()])["correct"] == 0.5


def test_reward_spec_rows_as_skyrl_datasets_write_them(problems):
    env = skyrl_gym.make(ENV_ID, env_config={}, extras={"reward_spec": {"ground_truth": ["7", "seven"]}})
    assert env.step("</think> so \\boxed{7}")["reward"] == 1.0


def test_register_twice_is_a_no_op(problems):
    register_env()
    assert skyrl_gym.registry[ENV_ID].entry_point == "er_integrations.skyrl:ElasticReasoningTextEnv"


def test_bad_rows_and_settings_fail_naming_the_fix(problems):
    with pytest.raises(ProblemError, match=r"reward_spec'\]\['ground_truth'\].*dataset_rows"):
        skyrl_gym.make(ENV_ID, env_config={}, extras={"reward_spec": {}})
    with pytest.raises(ProblemError, match="test spec"):
        skyrl_gym.make(ENV_ID, env_config={"task": "code"}, extras={"reward_spec": {"ground_truth": "1"}})
    with pytest.raises(ValueError, match=r"Unknown env_config key\(s\) \['think'\]"):
        skyrl_gym.make(ENV_ID, env_config={"think": 4}, extras=dataset_rows(problems)[0]["extras"])
    with pytest.raises(BudgetError):
        skyrl_gym.make(ENV_ID, env_config={"think_budget_tokens": -1, "solution_budget_tokens": 4},
                       extras=dataset_rows(problems)[0]["extras"])
    env = skyrl_gym.make(ENV_ID, env_config={}, extras=dataset_rows(problems)[0]["extras"])
    with pytest.raises(TypeError, match="completion text"):
        env.step([1, 2, 3])


def test_a_reward_cluster_url_grades_math_and_code_as_in_process(problems):
    from sandbox.service.local_server import LocalServer

    code = load_problems("embedded:code")[0]
    with LocalServer(judge_workers=1, math_workers=1, isolation_options={"base_uid": 63600, "workers": 1}) as srv:
        config = {"reward_endpoint": srv.url}
        math_env = skyrl_gym.make(ENV_ID, env_config=config, extras=dataset_rows(problems)[0]["extras"])
        assert math_env.step(f"</think> \\boxed{{{problems[0].answers[0]}}}")["reward"] == 1.0
        code_env = skyrl_gym.make(ENV_ID, env_config=config, extras=dataset_rows([code])[0]["extras"])
        out = code_env.step("</think>\n```python\nprint(1)\n```")
        assert out["metadata"]["verdict"] in ("WA", "RE") and out["reward"] == 0.0 and not out["metadata"]["is_error"]
