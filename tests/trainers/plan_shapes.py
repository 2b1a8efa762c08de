"""config.json files of real model shapes, written by the planner tests (never downloaded).

The values are those of the models' published config.json files (dimensions only; the
planner reads nothing else).
"""

from __future__ import annotations

import json
from pathlib import Path

_QWEN2 = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "max_position_embeddings": 131072,
          "rms_norm_eps": 1e-6, "rope_theta": 10000, "torch_dtype": "bfloat16", "hidden_act": "silu"}
SHAPES = {
    # DeepSeek-R1-Distill-Qwen-1.5B = DeepScaleR-1.5B-Preview (E1-Math-1.5B's start)
    "r1-distill-qwen-1.5b": {**_QWEN2, "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                             "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
                             "tie_word_embeddings": False},
    "r1-distill-qwen-7b": {**_QWEN2, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                           "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
                           "tie_word_embeddings": False},
    # DeepSeek-R1-Distill-Qwen-14B = DeepCoder-14B-Preview (E1-Code-14B's start)
    "r1-distill-qwen-14b": {**_QWEN2, "hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 48,
                            "num_attention_heads": 40, "num_key_value_heads": 8, "vocab_size": 152064,
                            "tie_word_embeddings": False},
    "llama-3.1-8b": {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
                     "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
                     "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False,
                     "max_position_embeddings": 131072, "attention_bias": False, "mlp_bias": False,
                     "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "torch_dtype": "bfloat16"},
    "qwen3-1.7b": {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "hidden_size": 2048,
                   "intermediate_size": 6144, "num_hidden_layers": 28, "num_attention_heads": 16,
                   "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "tie_word_embeddings": True,
                   "max_position_embeddings": 40960, "attention_bias": False, "torch_dtype": "bfloat16"},
}
#: the shape each shipped GPU recipe's model has
RECIPE_SHAPES = {"e1_math_1p5b": "r1-distill-qwen-1.5b", "e1_math_1p5b_1gpu": "r1-distill-qwen-1.5b",
                 "e1_math_1p5b_4gpu": "r1-distill-qwen-1.5b", "e1_code_14b": "r1-distill-qwen-14b",
                 "e1_code_14b_2node": "r1-distill-qwen-14b"}


def write_shape(root: Path, name: str, **changes) -> Path:
    """A checkpoint directory holding only ``config.json`` of shape ``name`` (fields changed/removed by ``changes``)."""
    config = {**SHAPES[name], **changes}
    config = {k: v for k, v in config.items() if v is not None}
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return path
