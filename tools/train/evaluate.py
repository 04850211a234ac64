#!/usr/bin/env python3
"""The trainer's own view of a checkpoint, printed as JSON: the NLL of a text read as one document
(what `dijiang score` computes: every byte, the first from end-of-text; DiJiang through its
recurrent state, softmax as one window) and greedy continuations
(what `dijiang generate --temperature 0` computes). The tests compare the two implementations.

    evaluate.py --checkpoint DIR [--score FILE] [--greedy PROMPT --max-tokens N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dijiang_train.checkpoint import load_checkpoint  # noqa: E402
from dijiang_train.data import encode, scoring_stream, streaming_nll, windowed_nll  # noqa: E402
from dijiang_train.model import BYTE_EOS_TOKEN_ID, GPTNeoX  # noqa: E402


@torch.no_grad()
def greedy(model: GPTNeoX, prompt: str, max_tokens: int) -> list[int]:
    """Greedy decode; an empty prompt starts from end-of-text and end-of-text stops it, as in the
    engine. DiJiang steps its recurrent state one token at a time; softmax re-reads the whole
    sequence each step."""
    tokens = encode(prompt).long().tolist() or [BYTE_EOS_TOKEN_ID]
    generated: list[int] = []
    if model.config.attention == "dijiang":
        logits, states = model(torch.tensor([tokens]), torch.arange(len(tokens))[None, :])
        for _ in range(max_tokens):
            next_id = int(logits[0, -1].argmax())
            if next_id == BYTE_EOS_TOKEN_ID:
                break
            generated.append(next_id)
            position = len(tokens) + len(generated) - 1
            logits, states = model(torch.tensor([[next_id]]), torch.tensor([[position]]), states)
        return generated
    for _ in range(max_tokens):
        sequence = tokens + generated
        logits, _ = model(torch.tensor([sequence]), torch.arange(len(sequence))[None, :])
        next_id = int(logits[0, -1].argmax())
        if next_id == BYTE_EOS_TOKEN_ID:
            break
        generated.append(next_id)
    return generated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--score", type=Path, help="text file to score as one document")
    parser.add_argument("--window", type=int, help="with --score, also the NLL of windows of N bytes read from scratch")
    parser.add_argument("--greedy", action="append", default=[], help="prompt to continue greedily (repeatable)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_checkpoint(args.checkpoint, None, chunk=64, seed=0)
    model.eval()
    result: dict[str, object] = {"attention": model.config.attention}
    if args.score is not None:
        stream = scoring_stream(args.score.read_text(encoding="utf-8"))
        if model.config.attention == "dijiang":
            total, count = streaming_nll(model, stream, torch.device("cpu"))
        else:
            # Softmax reads the whole text as one window: quadratic, fine for texts of a few kB.
            total, count = windowed_nll(model, stream, len(stream) - 1, torch.device("cpu"))
        result["score"] = {"tokens": count, "total_nll": total}
        if args.window is not None:
            total, count = windowed_nll(model, stream, args.window, torch.device("cpu"))
            result["windowed"] = {"window": args.window, "tokens": count, "total_nll": total}
    result["greedy"] = [{"prompt": prompt, "tokens": greedy(model, prompt, args.max_tokens)} for prompt in args.greedy]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
