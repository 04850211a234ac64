"""GPT-NeoX with DiJiang or softmax attention, as DIJIANG.md states it.

Parameter names are Hugging Face GPT-NeoX's, so a state dict exports to a checkpoint that
`dijiang model convert` reads unchanged. DiJiang's decay is learned (or fixed) per head as a
constant ratio g_h: D1[t] = g_h^t, D2[t] = g_h^-t, so r_t = g_h and c_t = 1 at every position,
and the chunked form below is exact at any length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

BYTE_VOCAB_SIZE = 257
BYTE_EOS_TOKEN_ID = 256


@dataclass(frozen=True)
class ModelConfig:
    attention: str  # 'dijiang' | 'softmax'
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    rotary_pct: float = 0.25
    rotary_base: float = 10000.0
    layer_norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def rotary_dims(self) -> int:
        return int(self.head_dim * self.rotary_pct)


# The project's presets (libs/model/src/config.ts), byte-level ones only: the trainer reads bytes.
PRESETS = {
    "tiny": dict(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=512),
    "small": dict(hidden_size=256, num_layers=4, num_heads=8, intermediate_size=1024),
}


def preset_config(name: str, attention: str) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return ModelConfig(attention=attention, vocab_size=BYTE_VOCAB_SIZE, **PRESETS[name])


def released_head_decays(num_heads: int) -> torch.Tensor:
    """g_h = 1 - exp(linspace(ln(1/32), ln(1/512), H)): the released initialisation (DIJIANG.md §2)."""
    return 1 - torch.exp(torch.linspace(math.log(1 / 32), math.log(1 / 512), num_heads, dtype=torch.float64))


def dct_matrix(d: int) -> torch.Tensor:
    """Orthonormal DCT-II: C[k, n] = s_k cos(pi k (2n + 1) / (2d))."""
    k = torch.arange(d, dtype=torch.float64)[:, None]
    n = torch.arange(d, dtype=torch.float64)[None, :]
    scale = torch.where(k == 0, math.sqrt(1 / d), math.sqrt(2 / d))
    return scale * torch.cos(math.pi * k * (2 * n + 1) / (2 * d))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Rotary(nn.Module):
    """NeoX RoPE on the first `rotary_dims` dims of each head, at absolute positions."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dims = config.rotary_dims
        inv_freq = config.rotary_base ** (-torch.arange(0, self.dims, 2, dtype=torch.float64) / self.dims)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x: [B, H, T, d]; positions: [B, T] absolute (int64)."""
        if self.dims == 0:
            return x
        # Angles in float64: positions reach millions in long documents, where float32 would lose
        # the low frequencies' phase.
        angles = positions.to(torch.float64)[:, None, :, None] * self.inv_freq
        angles = torch.cat((angles, angles), dim=-1)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        rotated, rest = x[..., : self.dims], x[..., self.dims :]
        return torch.cat((rotated * cos + rotate_half(rotated) * sin, rest), dim=-1)


def dijiang_chunked(
    phi_q: torch.Tensor,
    phi_k: torch.Tensor,
    v: torch.Tensor,
    log_g: torch.Tensor,
    state: torch.Tensor | None,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunked streaming form (DIJIANG.md §3) for constant per-head decay (r = g, c = 1).

    phi_q, phi_k, v: [B, H, T, d]; log_g: [H]; state: [B, H, d, d] (R before the first position)
    or None for a fresh sequence. Returns the outputs [B, H, T, d] and R after the last position.
    """
    batch, heads, length, d = v.shape
    if state is None:
        state = v.new_zeros(batch, heads, d, d)
    outputs = []
    start = 0
    while start < length:
        # Full chunks together, then the remainder (a shorter chunk) with the state they leave.
        size = chunk if length - start >= chunk else length - start
        count = (length - start) // size if size == chunk else 1
        end = start + count * size
        q = phi_q[:, :, start:end].reshape(batch, heads, count, size, d)
        k = phi_k[:, :, start:end].reshape(batch, heads, count, size, d)
        vv = v[:, :, start:end].reshape(batch, heads, count, size, d)
        index = torch.arange(size, device=v.device)
        lag = index[:, None] - index[None, :]
        lg = log_g.to(v.dtype)[:, None, None]
        inside = torch.where(lag >= 0, torch.exp(lg * lag.clamp(min=0)), torch.zeros((), dtype=v.dtype, device=v.device))
        scores = (q @ k.transpose(-1, -2)) * inside[None, :, None]
        intra = scores @ vv
        key_weight = torch.exp(log_g.to(v.dtype)[:, None] * (size - 1 - index))  # [H, size]
        chunk_kv = (k * key_weight[None, :, None, :, None]).transpose(-1, -2) @ vv  # [B, H, n, d, d]
        chunk_decay = torch.exp(log_g.to(v.dtype) * size)[None, :, None, None]
        before = []
        for j in range(count):
            before.append(state)
            state = chunk_decay * state + chunk_kv[:, :, j]
        prior = torch.stack(before, dim=2)  # [B, H, n, d, d]
        query_weight = torch.exp(log_g.to(v.dtype)[:, None] * (index + 1))  # [H, size]
        inter = (q * query_weight[None, :, None, :, None]) @ prior
        outputs.append((intra + inter).reshape(batch, heads, count * size, d))
        start = end
    return torch.cat(outputs, dim=2), state


def causal_mask(length: int, device: torch.device) -> torch.Tensor:
    """[T, T] additive mask: 0 on and below the diagonal, -inf above."""
    return torch.full((length, length), float("-inf"), device=device).triu(1)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, chunk: int):
        super().__init__()
        self.config = config
        self.chunk = chunk
        hidden = config.hidden_size
        self.query_key_value = nn.Linear(hidden, 3 * hidden)
        self.dense = nn.Linear(hidden, hidden)
        self.rotary = Rotary(config)
        if config.attention == "dijiang":
            d = config.head_dim
            # P = C diag(t): frozen, but saved (it is the model's, not recomputed on load).
            self.register_buffer("proj_matrix", torch.zeros(d, d))
            # x @ W_G with W_G stored [in, out], as the released code's raw parameter.
            self.W_G = nn.Parameter(torch.zeros(hidden, hidden))
            self.group_norm = nn.GroupNorm(d, hidden, eps=config.layer_norm_eps)
            # log g_h = -exp(decay_log_rate): g stays in (0, 1) whatever the optimiser does.
            self.decay_log_rate = nn.Parameter(torch.zeros(config.num_heads))

    def head_log_decay(self) -> torch.Tensor:
        return -torch.exp(self.decay_log_rate)

    def forward(self, x, positions, state):
        batch, length, hidden = x.shape
        heads, d = self.config.num_heads, self.config.head_dim
        qkv = self.query_key_value(x).view(batch, length, heads, 3 * d).transpose(1, 2)
        q, k, v = qkv[..., :d], qkv[..., d : 2 * d], qkv[..., 2 * d :]
        q, k = self.rotary(q, positions), self.rotary(k, positions)
        if self.config.attention == "softmax":
            # Scale q (B*T*d values) rather than the scores (B*T*T), and mask by adding -inf:
            # elementwise passes over the T x T scores cost more than the matmuls here.
            scores = (q * (1 / math.sqrt(d))) @ k.transpose(-1, -2)
            out = (scores + causal_mask(length, x.device)).softmax(-1) @ v
            merged = out.transpose(1, 2).reshape(batch, length, hidden)
            return self.dense(merged), None
        phi_q = (q @ self.proj_matrix).softmax(-1)
        phi_k = (k @ self.proj_matrix).softmax(-1)
        out, state = dijiang_chunked(phi_q, phi_k, v, self.head_log_decay(), state, self.chunk)
        merged = out.transpose(1, 2).reshape(batch * length, hidden)
        normed = self.group_norm(merged).view(batch, length, hidden)
        gate = F.silu(x @ self.W_G)
        return self.dense(gate * normed), state


class Layer(nn.Module):
    def __init__(self, config: ModelConfig, chunk: int):
        super().__init__()
        hidden = config.hidden_size
        self.input_layernorm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.post_attention_layernorm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.attention = Attention(config, chunk)
        self.mlp = nn.Module()
        self.mlp.dense_h_to_4h = nn.Linear(hidden, config.intermediate_size)
        self.mlp.dense_4h_to_h = nn.Linear(config.intermediate_size, hidden)

    def forward(self, h, positions, state):
        attn, state = self.attention(self.input_layernorm(h), positions, state)
        mlp_in = self.post_attention_layernorm(h)
        mlp = self.mlp.dense_4h_to_h(F.gelu(self.mlp.dense_h_to_4h(mlp_in)))
        return h + attn + mlp, state


class GPTNeoX(nn.Module):
    """Parallel-residual GPT-NeoX; `gpt_neox.*` and `embed_out.*` match Hugging Face's names."""

    def __init__(self, config: ModelConfig, chunk: int = 64):
        super().__init__()
        self.config = config
        self.gpt_neox = nn.Module()
        self.gpt_neox.embed_in = nn.Embedding(config.vocab_size, config.hidden_size)
        self.gpt_neox.layers = nn.ModuleList(Layer(config, chunk) for _ in range(config.num_layers))
        self.gpt_neox.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.embed_out = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, states: list | None = None):
        """ids, positions: [B, T]. states: per-layer R ([B, H, d, d]) or None. Returns logits and
        the per-layer states after the last position (None entries for softmax)."""
        h = self.gpt_neox.embed_in(ids)
        new_states = []
        for index, layer in enumerate(self.gpt_neox.layers):
            h, state = layer(h, positions, None if states is None else states[index])
            new_states.append(state)
        return self.embed_out(self.gpt_neox.final_layer_norm(h)), new_states

    def attention_layers(self):
        return [layer.attention for layer in self.gpt_neox.layers]

    def head_decays(self) -> torch.Tensor:
        """[layers, heads] learned g (float64)."""
        return torch.stack([torch.exp(a.head_log_decay().detach().double()) for a in self.attention_layers()])


def init_weights(model: GPTNeoX, seed: int) -> None:
    """From-scratch init: N(0, 0.02) weights, output projections scaled by 1/sqrt(2 layers), zero
    biases, unit norms; DiJiang tensors as the released transform (see init_dijiang)."""
    generator = torch.Generator().manual_seed(seed)
    config = model.config
    out_std = 0.02 / math.sqrt(2 * config.num_layers)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("W_G") or name.endswith("decay_log_rate") or "group_norm" in name:
                continue
            if "norm" in name:
                param.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                param.zero_()
            else:
                std = out_std if (name.endswith("attention.dense.weight") or name.endswith("dense_4h_to_h.weight")) else 0.02
                param.copy_(torch.randn(param.shape, generator=generator) * std)
    if config.attention == "dijiang":
        init_dijiang(model, seed)


def init_dijiang(model: GPTNeoX, seed: int) -> None:
    """The paper's transform step for the DiJiang tensors (DIJIANG.md §2): P = C diag(t) with
    t ~ N(0, 1), W_G xavier-uniform with gain 2^-2.5, GroupNorm 1 and 0, g_h as released."""
    config = model.config
    generator = torch.Generator().manual_seed(seed + 1)
    d, hidden = config.head_dim, config.hidden_size
    dct = dct_matrix(d)
    decays = released_head_decays(config.num_heads)
    with torch.no_grad():
        for attention in model.attention_layers():
            t = torch.randn(d, generator=generator, dtype=torch.float64)
            attention.proj_matrix.copy_((dct * t[None, :]).float())
            bound = 2**-2.5 * math.sqrt(6 / (hidden + hidden))
            attention.W_G.copy_((torch.rand(hidden, hidden, generator=generator) * 2 - 1) * bound)
            attention.group_norm.weight.fill_(1.0)
            attention.group_norm.bias.zero_()
            attention.decay_log_rate.copy_(torch.log(-torch.log(decays)).float())
