"""`er proxy` in front of a real `er serve` process (tiny model): equal to OpenAIBackend on it.

Budgets: one binding (thinking cut, solution cut) and one that does not bind; the proxy's
first upstream is down from the start.
"""

from __future__ import annotations

from er_serving.proxy.app import create_app
from er_serving.proxy.config import ProxyConfig
from tests.engine.test_openai_backend import MODEL, server_url  # noqa: F401 - the `er serve` process fixture
from tests.proxy.fake_upstream import free_port, serve_in_thread
from tests.proxy.real_checks import check_proxy_equals_backend


def test_proxy_equals_openai_backend_on_er_serve(server_url, tiny_model_dir):  # noqa: F811
    dead = f"http://127.0.0.1:{free_port()}"  # an upstream down at start: skipped, never an error to the client
    cfg = ProxyConfig(upstream=f"{dead},{server_url}", model=MODEL, tokenizer=str(tiny_model_dir))
    with serve_in_thread(create_app(cfg)) as url:
        made = check_proxy_equals_backend(url, server_url, MODEL, str(tiny_model_dir), [(6, 4), (200, 200)])
    assert made == 8
