"""What a resource plan (:mod:`trainers.plan`) is computed from: the model's shape, the card, the engine.

Pure Python (json, yaml): nothing here imports torch, transformers or vLLM, so a plan is
arithmetic over three small files: the model's ``config.json`` (a local checkpoint or the
Hugging Face cache), the recipe, and its accelerate config.

- :class:`ModelShape`: the decoder's dimensions, read from ``config.json``, with the exact
  parameter count of the transformers implementation (Qwen2, Qwen3, Llama, Mistral; tested
  against ``from_config`` on the meta device).
- :class:`GPU`: a card's memory (and, for the named cards, the bandwidth and bf16 rate used
  for the step-time estimate): ``a100-80gb``, ``h100-80gb``, ``h200-141gb``... or ``custom:<GiB>``.
- :class:`Engine`: how the trainer shards its states (DDP / single process, ZeRO-1/2/3 with
  or without offload, FSDP), read from the accelerate YAML.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

__all__ = ["DTYPE_BYTES", "GPU", "GPUS", "ConfigJSONMissing", "Engine", "ModelShape", "PlanError", "find_config_json",
           "load_config_json", "parse_gpu", "read_engine"]

GiB = 2**30


class PlanError(ValueError):
    """A plan cannot be computed from these inputs; the message names the field and the fix."""


class ConfigJSONMissing(PlanError):
    """The model's ``config.json`` is not available here (not a local checkpoint, not in the HF cache)."""


#: bytes per element of the dtypes a checkpoint or ``model_init_kwargs`` may name
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "half": 2, "bf16": 2, "fp16": 2, "float32": 4, "float": 4, "fp32": 4}

#: decoder families whose parameter layout this module knows (``config.json`` ``model_type``)
MODEL_TYPES = ("qwen2", "qwen3", "llama", "mistral")


@dataclass(frozen=True)
class ModelShape:
    """A decoder-only transformer's dimensions (from its ``config.json``).

    Attributes:
        model_type: ``qwen2``, ``qwen3``, ``llama`` or ``mistral``.
        hidden_size: the usual dimensions, with ``num_layers``, ``num_heads``,
            ``num_kv_heads``, ``head_dim`` (defaults to hidden / heads), ``intermediate_size``
            and ``vocab_size``.
        tie_word_embeddings: the LM head shares the embedding matrix.
        max_position_embeddings: the model's context length.
        qkv_bias: q/k/v projections have biases (Qwen2 always; Llama/Qwen3 via ``attention_bias``).
        o_bias: the output projection has a bias (Llama/Qwen3 ``attention_bias``).
        mlp_bias: the MLP projections have biases (Llama ``mlp_bias``).
        qk_norm: per-head RMSNorm on q and k (Qwen3).
        dtype_bytes: bytes per weight of the checkpoint (``torch_dtype``/``dtype``; 2 when unset).

    """

    model_type: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    dtype_bytes: int = 2

    @classmethod
    def from_config(cls, config: Mapping[str, Any], source: str = "config.json") -> "ModelShape":
        """Read the shape from a ``config.json`` mapping.

        Raises:
            PlanError: an unsupported ``model_type`` or a missing/invalid field (named).

        """
        config = dict(config.get("text_config") or config)
        kind = config.get("model_type")
        if kind not in MODEL_TYPES:
            raise PlanError(f"{source}: model_type {kind!r} is not one the planner knows ({', '.join(MODEL_TYPES)}); "
                            "its parameter layout would be a guess. Plan a model of one of these families.")

        def need(name: str) -> int:
            value = config.get(name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise PlanError(f"{source}: field {name!r} is missing or not a positive integer (got {value!r}); "
                                f"the planner needs it for a {kind} model: add it to config.json (the checkpoint's "
                                "own config has it).")
            return value

        hidden, heads = need("hidden_size"), need("num_attention_heads")
        head_dim = config.get("head_dim") or hidden // heads
        kv = config.get("num_key_value_heads") or heads
        dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16").removeprefix("torch.")
        attn_bias = bool(config.get("attention_bias", False))
        return cls(
            model_type=kind, hidden_size=hidden, num_layers=need("num_hidden_layers"), num_heads=heads,
            num_kv_heads=kv, head_dim=head_dim, intermediate_size=need("intermediate_size"),
            vocab_size=need("vocab_size"), tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            max_position_embeddings=need("max_position_embeddings"),
            qkv_bias=True if kind == "qwen2" else attn_bias, o_bias=attn_bias if kind != "qwen2" else False,
            mlp_bias=bool(config.get("mlp_bias", False)) if kind == "llama" else False, qk_norm=kind == "qwen3",
            dtype_bytes=DTYPE_BYTES.get(dtype, 2))

    @property
    def q_dim(self) -> int:
        """Width of the query projection (heads x head_dim)."""
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of each of the key and value projections."""
        return self.num_kv_heads * self.head_dim

    @property
    def layer_parameters(self) -> int:
        """Parameters of one decoder layer."""
        h, i = self.hidden_size, self.intermediate_size
        attn = h * self.q_dim + 2 * h * self.kv_dim + self.q_dim * h
        attn += (self.q_dim + 2 * self.kv_dim) * self.qkv_bias + h * self.o_bias + 2 * self.head_dim * self.qk_norm
        mlp = 3 * h * i + (2 * i + h) * self.mlp_bias
        return attn + mlp + 2 * h  # two RMSNorms

    @property
    def embedding_parameters(self) -> int:
        """The input embedding (vocab x hidden)."""
        return self.vocab_size * self.hidden_size

    @property
    def parameters(self) -> int:
        """All parameters, a tied LM head counted once (as ``model.parameters()`` yields them)."""
        head = 0 if self.tie_word_embeddings else self.embedding_parameters
        return self.embedding_parameters + head + self.num_layers * self.layer_parameters + self.hidden_size

    @property
    def largest_layer_parameters(self) -> int:
        """Parameters of the largest single module (DeepSpeed's "largest layer"): the embedding for these models."""
        h, i = self.hidden_size, self.intermediate_size
        return max(self.embedding_parameters, h * i + i * self.mlp_bias, h * self.q_dim + self.q_dim * self.qkv_bias)

    def kv_bytes_per_token(self, tensor_parallel: int = 1, dtype_bytes: int = 2) -> int:
        """KV-cache bytes per token on one GPU: 2 (K and V) x layers x KV heads per GPU x head_dim x dtype.

        With tensor parallelism vLLM splits the KV heads; a TP size above the KV-head count
        replicates them (at least one head per GPU).
        """
        heads = max(1, self.num_kv_heads // tensor_parallel)
        return 2 * self.num_layers * heads * self.head_dim * dtype_bytes


def find_config_json(model: str) -> Path:
    """The ``config.json`` of a local checkpoint or of a hub model already in the Hugging Face cache.

    Raises:
        PlanError: no local ``config.json`` and none cached (the message gives the one-file download).

    """
    path = Path(model).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return path / "config.json"
        raise ConfigJSONMissing(f"model {model!r} is a directory without config.json; point model at a checkpoint.")
    if path.is_file() and path.name.endswith(".json"):
        return path
    if model.count("/") > 1 or model.startswith((".", "/", "~")):
        raise ConfigJSONMissing(f"model {model!r} looks like a local path but holds no config.json yet; build or "
                                "copy the checkpoint there first.")
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
    except (ImportError, ValueError):  # no huggingface_hub, or not a valid repo id
        cached = None
    if isinstance(cached, str):
        return Path(cached)
    raise ConfigJSONMissing(f"model {model!r}: its config.json is neither a local file nor in the Hugging Face "
                            f"cache. Fetch that one small file (no weights): huggingface-cli download {model} "
                            "config.json, or set model to a local checkpoint directory.")

@dataclass(frozen=True)
class GPU:
    """One card: its memory and, for named cards, the speed figures of the step-time estimate.

    Attributes:
        name: the ``--gpu`` value.
        memory_bytes: memory as the driver reports it (``nvidia-smi`` total).
        bandwidth_bytes_s: HBM bandwidth (``None`` for ``custom:``).
        bf16_flops: dense bf16 tensor-core rate (``None`` for ``custom:``).

    """

    name: str
    memory_bytes: int
    bandwidth_bytes_s: float | None = None
    bf16_flops: float | None = None


MiB = 2**20
#: the named cards (memory: nvidia-smi's total; bandwidth and dense bf16 rate: the vendor's data sheets)
GPUS = {
    "a100-40gb": GPU("a100-40gb", 40960 * MiB, 1.555e12, 312e12),
    "a100-80gb": GPU("a100-80gb", 81920 * MiB, 2.039e12, 312e12),
    "h100-80gb": GPU("h100-80gb", 81559 * MiB, 3.35e12, 989e12),
    "h200-141gb": GPU("h200-141gb", 143771 * MiB, 4.8e12, 989e12),
    "l40s-48gb": GPU("l40s-48gb", 46068 * MiB, 0.864e12, 362e12),
}
_ALIASES = {"a100": "a100-80gb", "h100": "h100-80gb", "h200": "h200-141gb", "l40s": "l40s-48gb", "40gb": "a100-40gb",
            "80gb": "a100-80gb", "141gb": "h200-141gb"}


def parse_gpu(text: str) -> GPU:
    """A card from ``--gpu``: a name from :data:`GPUS` (or ``a100``, ``h100``, ``h200``...) or ``custom:<GiB>``.

    Raises:
        PlanError: an unknown name or a bad ``custom:`` size.

    """
    key = text.strip().lower()
    if key.startswith("custom:"):
        try:
            gib = float(key.split(":", 1)[1])
        except ValueError:
            gib = -1.0
        if gib <= 0:
            raise PlanError(f"--gpu {text!r}: custom:<GiB> needs a positive size in GiB, e.g. custom:24.")
        return GPU(key, int(gib * GiB))
    key = _ALIASES.get(key, key)
    if key in GPUS:
        return GPUS[key]
    close = difflib.get_close_matches(key, list(GPUS) + list(_ALIASES), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise PlanError(f"--gpu {text!r} is not a known card.{hint} Known: {', '.join(GPUS)}; or custom:<GiB> "
                    "(e.g. custom:24) for any other card.")


@dataclass(frozen=True)
class Engine:
    """How the trainer keeps its states on each GPU.

    Attributes:
        kind: ``single`` (one process), ``ddp``, ``zero`` (DeepSpeed) or ``fsdp``.
        zero_stage: DeepSpeed's ZeRO stage (0 otherwise).
        offload_optimizer: optimizer states (and master weights) on CPU.
        offload_params: parameters on CPU (ZeRO-3 / FSDP).
        reshard_after_forward: FSDP frees gathered layers after their forward.
        mixed_precision: accelerate's ``mixed_precision``.
        source: the accelerate YAML (or why there is none).

    """

    kind: str
    zero_stage: int = 0
    offload_optimizer: bool = False
    offload_params: bool = False
    reshard_after_forward: bool = True
    mixed_precision: str = "bf16"
    source: str = ""

    def describe(self) -> str:
        """One line for the plan."""
        if self.kind == "zero":
            off = [n for n, on in (("optimizer", self.offload_optimizer), ("params", self.offload_params)) if on]
            return f"DeepSpeed ZeRO-{self.zero_stage}" + (f", offload {'+'.join(off)} to CPU" if off else "")
        if self.kind == "fsdp":
            return "FSDP (fp32 sharded states, bf16 compute)" + (", params offloaded" if self.offload_params else "")
        return {"single": "one process (no sharding)", "ddp": "DDP (whole model on every GPU)"}[self.kind]


def read_engine(accelerate_config: str | None, num_processes: int) -> Engine:
    """The engine an accelerate YAML selects (``None``: one process, or DDP for several).

    Raises:
        PlanError: an unreadable YAML or a distributed_type the planner does not model.

    """
    import yaml

    if accelerate_config is None:
        return Engine("single" if num_processes == 1 else "ddp", source="no accelerate_config")
    try:
        data = yaml.safe_load(Path(accelerate_config).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PlanError(f"accelerate_config {accelerate_config!r} cannot be read: {exc}") from None
    kind = data.get("distributed_type", "NO")
    mp = str(data.get("mixed_precision", "no"))
    if kind == "DEEPSPEED":
        ds = data.get("deepspeed_config") or {}
        if ds.get("deepspeed_config_file"):
            raise PlanError(f"accelerate_config {accelerate_config!r} points at a DeepSpeed JSON "
                            f"({ds['deepspeed_config_file']}); the planner reads the inline deepspeed_config keys "
                            "(zero_stage, offload_*_device). Inline them to plan this run.")
        return Engine("zero", zero_stage=int(ds.get("zero_stage", 2)),
                      offload_optimizer=str(ds.get("offload_optimizer_device", "none")) != "none",
                      offload_params=str(ds.get("offload_param_device", "none")) != "none", mixed_precision=mp,
                      source=accelerate_config)
    if kind == "FSDP":
        fs = data.get("fsdp_config") or {}
        return Engine("fsdp", offload_params=bool(fs.get("fsdp_offload_params", False)),
                      reshard_after_forward=bool(fs.get("fsdp_reshard_after_forward", True)), mixed_precision=mp,
                      source=accelerate_config)
    if kind in ("MULTI_GPU", "MULTI_CPU", "NO"):
        return Engine("single" if num_processes == 1 else "ddp", mixed_precision=mp, source=accelerate_config)
    raise PlanError(f"accelerate_config {accelerate_config!r}: distributed_type {kind!r} is not modelled (DEEPSPEED, "
                    "FSDP, MULTI_GPU, MULTI_CPU, NO are).")


def load_config_json(model: str) -> tuple[ModelShape, Path]:
    """The shape of ``model`` (see :func:`find_config_json`).

    Raises:
        PlanError: no config.json, invalid JSON, or missing fields.

    """
    path = find_config_json(model)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PlanError(f"{path}: not a readable config.json ({exc}).") from None
    return ModelShape.from_config(data, source=str(path)), path
