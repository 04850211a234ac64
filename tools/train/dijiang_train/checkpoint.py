"""Hugging Face style checkpoints: `config.json` + `model.safetensors` (+ the model card).

Export writes what `dijiang model convert` serves unchanged; import reads the same layout, from
this trainer or a plain GPT-NeoX/Pythia checkpoint (which then gets the paper's transform step).
Safetensors is read and written here directly (8-byte header length, JSON header, raw data), so
the trainer needs nothing beyond PyTorch.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from .model import BYTE_VOCAB_SIZE, GPTNeoX, ModelConfig, init_dijiang

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"

# Decay tables cover this many positions at most (the graph continues past them with the last
# ratio and product, exactly so for constant decay); fewer when g^-(t) would not fit in float32.
DECAY_TABLE_POSITIONS = 64
FLOAT32_LOG_LIMIT = 80.0  # e^80 ~ 5.5e34, well inside float32's 3.4e38

_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
_NAMES = {value: key for key, value in _DTYPES.items()}
# Buffers GPT-NeoX checkpoints may carry that the model recomputes.
_IGNORED_SUFFIXES = ("attention.bias", "attention.masked_bias", "attention.rotary_emb.inv_freq")


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    header: dict[str, object] = {}
    blobs = []
    offset = 0
    for name, tensor in tensors.items():
        data = tensor.detach().contiguous().cpu().numpy().tobytes()
        header[name] = {"dtype": _NAMES[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(encoded)))
        file.write(encoded)
        for blob in blobs:
            file.write(blob)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    base = 8 + length
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {entry['dtype']}")
        start, end = entry["data_offsets"]
        tensor = torch.frombuffer(bytearray(raw[base + start : base + end]), dtype=_DTYPES[entry["dtype"]])
        tensors[name] = tensor.reshape(entry["shape"]).float()
    return tensors


def read_checkpoint_weights(directory: Path) -> dict[str, torch.Tensor]:
    single = directory / WEIGHTS_FILE
    if single.is_file():
        return read_safetensors(single)
    index = directory / "model.safetensors.index.json"
    if not index.is_file():
        raise FileNotFoundError(f"{directory}: no {WEIGHTS_FILE} or model.safetensors.index.json")
    tensors = {}
    for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
        tensors.update(read_safetensors(directory / shard))
    return tensors


def decay_table_positions(decays: torch.Tensor) -> int:
    """Longest table (up to DECAY_TABLE_POSITIONS) whose g^-(t) stays finite in float32."""
    worst = float(-torch.log(decays).max())
    if worst == 0:
        return DECAY_TABLE_POSITIONS
    return max(2, min(DECAY_TABLE_POSITIONS, 1 + int(FLOAT32_LOG_LIMIT / worst)))


def export_checkpoint(model: GPTNeoX, directory: Path) -> dict:
    """Writes config.json and model.safetensors; returns the config written."""
    config = model.config
    directory.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    table_positions = 2048
    dijiang: dict[str, object] = {}
    if config.attention == "dijiang":
        decays = model.head_decays()  # [layers, heads], float64
        table_positions = decay_table_positions(decays)
        dijiang = {
            "decay": "per-head constant",
            "head_decays": [[round(float(g), 8) for g in row] for row in decays],
            "decay_table_positions": table_positions,
        }
    for name, tensor in state.items():
        if name.endswith("decay_log_rate"):
            layer_prefix = name[: -len("decay_log_rate")]
            g = decays[int(name.split(".")[2])]
            t = torch.arange(table_positions, dtype=torch.float64)
            tensors[layer_prefix + "D1"] = (g[:, None] ** t[None, :]).float().view(1, config.num_heads, table_positions, 1)
            tensors[layer_prefix + "D2"] = (g[:, None] ** -t[None, :]).float().view(1, config.num_heads, table_positions, 1)
            continue
        tensors[name] = tensor.float()
    hf_config = {
        "architectures": ["GPTNeoXForCausalLM"],
        "model_type": "gpt_neox",
        "hidden_size": config.hidden_size,
        "num_attention_heads": config.num_heads,
        "num_hidden_layers": config.num_layers,
        "intermediate_size": config.intermediate_size,
        "vocab_size": config.vocab_size,
        # For DiJiang the length of the decay tables, not a context limit: past them the graph
        # continues with the last ratio and product (exact for this trainer's constant decay).
        "max_position_embeddings": table_positions,
        "rotary_pct": config.rotary_pct,
        "rotary_emb_base": config.rotary_base,
        "layer_norm_eps": config.layer_norm_eps,
        "hidden_act": "gelu",
        "use_parallel_residual": True,
        "tie_word_embeddings": False,
        "bos_token_id": 256 if config.vocab_size == BYTE_VOCAB_SIZE else 0,
        "eos_token_id": 256 if config.vocab_size == BYTE_VOCAB_SIZE else 0,
        "torch_dtype": "float32",
        "dijiang_attention": config.attention,
        **({"dijiang": dijiang} if dijiang else {}),
    }
    (directory / CONFIG_FILE).write_text(json.dumps(hf_config, indent=2) + "\n")
    write_safetensors(directory / WEIGHTS_FILE, tensors)
    return hf_config


def load_checkpoint(directory: Path, attention: str | None, chunk: int, seed: int) -> tuple[GPTNeoX, str]:
    """Builds a model from a checkpoint folder. `attention` None keeps the checkpoint's kind.

    Returns the model and where its DiJiang tensors came from: 'checkpoint', 'transform' (a
    softmax/Pythia checkpoint converted with the paper's transform step) or 'none' (softmax).
    """
    hf = json.loads((directory / CONFIG_FILE).read_text())
    if not hf.get("use_parallel_residual", True):
        raise ValueError(f"{directory}: use_parallel_residual must be true (GPT-NeoX parallel residual)")
    if hf.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"{directory}: hidden_act must be 'gelu'")
    weights = {
        name: tensor
        for name, tensor in read_checkpoint_weights(directory).items()
        if not name.endswith(_IGNORED_SUFFIXES)
    }
    has_dijiang = any(name.endswith("attention.W_G") for name in weights)
    kind = attention or ("dijiang" if has_dijiang else "softmax")
    if kind == "softmax" and has_dijiang:
        raise ValueError(f"{directory}: the checkpoint has DiJiang tensors; training it as softmax would discard them")
    config = ModelConfig(
        attention=kind,
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"],
        intermediate_size=hf["intermediate_size"],
        rotary_pct=hf.get("rotary_pct", 0.25),
        rotary_base=hf.get("rotary_emb_base", hf.get("rope_theta", 10000.0)),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-5),
    )
    model = GPTNeoX(config, chunk)
    source = "none"
    if kind == "dijiang":
        if has_dijiang:
            source = "checkpoint"
            for layer, attention_module in enumerate(model.attention_layers()):
                prefix = f"gpt_neox.layers.{layer}.attention."
                d1 = weights.pop(prefix + "D1").double().view(config.num_heads, -1)
                d2 = weights.pop(prefix + "D2").double().view(config.num_heads, -1)
                ratio = d1[:, 1:] / d1[:, :-1]
                if not torch.allclose(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-4) or not torch.allclose(
                    d1 * d2, torch.ones_like(d1), rtol=1e-4
                ):
                    raise ValueError(
                        f"{directory}: layer {layer} has position-dependent decay tables; this trainer learns "
                        "constant per-head decay (D1[t] = g^t, D2[t] = g^-t) only"
                    )
                with torch.no_grad():
                    attention_module.decay_log_rate.copy_(torch.log(-torch.log(ratio[:, 0])).float())
        else:
            source = "transform"
            init_dijiang(model, seed)
    expected = {name for name in model.state_dict() if not name.endswith("decay_log_rate")}
    missing = sorted(expected - set(weights))
    if source == "transform":
        missing = [name for name in missing if not _is_dijiang_tensor(name)]
    unexpected = sorted(set(weights) - expected)
    if missing or unexpected:
        raise ValueError(f"{directory}: missing tensors {missing[:4]}, unexpected tensors {unexpected[:4]}")
    loaded = model.state_dict()
    for name, tensor in weights.items():
        if tuple(tensor.shape) != tuple(loaded[name].shape):
            raise ValueError(f"{directory}: tensor {name} has shape {list(tensor.shape)}, expected {list(loaded[name].shape)}")
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{directory}: tensor {name} has non-finite values")
        loaded[name].copy_(tensor)
    return model, source


def _is_dijiang_tensor(name: str) -> bool:
    return name.endswith(("attention.proj_matrix", "attention.W_G", "attention.group_norm.weight", "attention.group_norm.bias"))
