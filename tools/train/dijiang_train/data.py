"""Corpus loading, batches and the two validation measures.

Byte-level: ids 0-255 are UTF-8 bytes, 256 is end of text (the project's byte tokenizer).
Training documents are joined with end-of-text between them; `dijiang score` prepends
end-of-text to a text, so the model sees each document start the same way in both.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.nn import functional as F

from .model import BYTE_EOS_TOKEN_ID, GPTNeoX


def encode(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).to(torch.int16)


def load_training_stream(corpus: Path) -> torch.Tensor:
    """train.txt split into corpus.json's documents, end-of-text before each (int16)."""
    meta = json.loads((corpus / "corpus.json").read_text())
    data = (corpus / "train.txt").read_bytes()
    parts, offset = [], 0
    for document in meta["documents"]:
        end = offset + document["train_bytes"]
        parts.append(torch.tensor([BYTE_EOS_TOKEN_ID], dtype=torch.int16))
        parts.append(torch.frombuffer(bytearray(data[offset:end]), dtype=torch.uint8).to(torch.int16))
        offset = end
    if offset != len(data):
        raise ValueError(f"{corpus}: corpus.json's documents cover {offset} bytes of train.txt's {len(data)}")
    return torch.cat(parts)


def scoring_stream(text: str) -> torch.Tensor:
    """What `dijiang score` predicts: every byte of the text, the first from end-of-text."""
    return torch.cat((torch.tensor([BYTE_EOS_TOKEN_ID], dtype=torch.int16), encode(text)))


class Batches:
    """Random training windows; positions start at a random offset so every RoPE phase is seen
    (DiJiang's feature map makes attention depend on absolute phase, and documents run long)."""

    def __init__(self, stream: torch.Tensor, batch_size: int, seq_len: int, seed: int, max_offset: int = 1 << 20):
        if len(stream) <= seq_len + 1:
            raise ValueError(f"the training text has {len(stream)} tokens, fewer than --seq-len {seq_len} + 2")
        self.stream = stream
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.max_offset = max_offset
        self.generator = torch.Generator().manual_seed(seed)

    def next(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, len(self.stream) - self.seq_len - 1, (self.batch_size,), generator=self.generator)
        offsets = torch.randint(0, self.max_offset, (self.batch_size, 1), generator=self.generator)
        window = torch.arange(self.seq_len + 1)
        tokens = self.stream[starts[:, None] + window[None, :]].long()
        positions = offsets + window[None, :-1]
        return tokens[:, :-1].to(device), tokens[:, 1:].to(device), positions.to(device)


@torch.no_grad()
def windowed_nll(model: GPTNeoX, stream: torch.Tensor, seq_len: int, device: torch.device, max_windows: int | None = None, batch_size: int = 16) -> tuple[float, int]:
    """Total NLL and token count over consecutive windows of `seq_len`, each read from scratch at
    positions 0.. (what a model with a context of `seq_len` sees; comparable across attention kinds).
    `max_windows` limits it to the first full windows (a quick estimate during training)."""
    model.eval()
    targets = len(stream) - 1
    starts = list(range(0, targets - seq_len + 1, seq_len))
    groups = [(starts[i : i + batch_size], seq_len) for i in range(0, len(starts), batch_size)]
    if max_windows is not None:
        groups = [(starts[:max_windows], seq_len)]
    elif targets % seq_len:
        groups.append(([targets - targets % seq_len], targets % seq_len))
    total, count = 0.0, 0
    for group, size in groups:
        index = torch.tensor(group)[:, None] + torch.arange(size + 1)[None, :]
        tokens = stream[index].long().to(device)
        positions = torch.arange(size, device=device).expand(len(group), size)
        logits, _ = model(tokens[:, :-1], positions)
        total += float(F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), reduction="sum"))
        count += tokens[:, 1:].numel()
    model.train()
    return total, count


@torch.no_grad()
def streaming_nll(model: GPTNeoX, stream: torch.Tensor, device: torch.device, chunk_tokens: int = 2048) -> tuple[float, int]:
    """Total NLL of the whole stream read as one sequence with the recurrent state carried, at
    absolute positions: exactly what `dijiang score` computes. DiJiang only."""
    if model.config.attention != "dijiang":
        raise ValueError("streaming NLL needs DiJiang attention (softmax has no fixed-size state)")
    model.eval()
    total, states = 0.0, None
    for start in range(0, len(stream) - 1, chunk_tokens):
        end = min(start + chunk_tokens, len(stream) - 1)
        tokens = stream[start : end + 1].long().to(device)[None, :]
        positions = torch.arange(start, end, device=device)[None, :]
        logits, states = model(tokens[:, :-1], positions, states)
        total += float(F.cross_entropy(logits.float()[0].double(), tokens[0, 1:], reduction="sum"))
    model.train()
    return total, len(stream) - 1
