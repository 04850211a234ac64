"""The model card (README.md beside the weights): what a user of the checkpoint needs to know."""

from __future__ import annotations

from pathlib import Path

from .checkpoint import CARD_FILE


def write_model_card(directory: Path, name: str, summary: dict, hf_config: dict, corpus: dict) -> None:
    documents = corpus["documents"]
    sources = "\n".join(f"- `{key}`: {licence}" for key, licence in corpus["sources"].items())
    titles = ", ".join(f"{d['title']} ({d['train_bytes']:,} + {d['valid_bytes']:,} bytes)" for d in documents)
    files = corpus["files"]
    decay = hf_config.get("dijiang")
    decay_text = (
        f"Per-head constant decay g (learned), stored as {decay['decay_table_positions']}-position D1/D2 tables "
        "(D1[t] = g^t, D2[t] = g^-t); past the tables the graph continues with the last ratio and product, which "
        "for constant decay is exact at every position. g per layer: "
        + "; ".join(", ".join(f"{g:.3f}" for g in row) for row in decay["head_decays"])
        if decay
        else "Softmax attention (the GPT-NeoX baseline): a growing KV cache, no decay."
    )
    streaming = summary.get("valid_loss_streaming")
    streaming_line = (
        f"- Whole split read as one document (what `dijiang score` computes): **{streaming:.4f} nats/byte** "
        f"(total NLL {summary['valid_total_nll_streaming']:.3f} over {summary['valid_tokens']:,} bytes)\n"
        if streaming is not None
        else ""
    )
    text = f"""# {name}

A {summary['parameters']:,}-parameter GPT-NeoX language model with **{summary['attention']}** attention,
byte-level (ids 0-255 are UTF-8 bytes, 256 is end of text), made by this project's trainer
(`tools/train/`). It writes English in the style of its training text; it is small, and it is
not an assistant.

## Training
- Command: `{summary['command']}`
- Start: {summary['origin']}{f" (from `{summary['init_from']}`)" if summary['init_from'] else ''}
- Tokens seen: {summary['tokens_seen']:,} ({summary['steps']:,} steps of {summary['batch_size']} x {summary['seq_len']} bytes)
- Time: {summary['train_seconds'] / 60:.1f} min on {summary['device']} ({summary['precision']}), {summary['tokens_per_second']:,.0f} tokens/s

## Data
{titles}.
The split is fixed by `tools/train/prepare_corpus.py`: the last {corpus['valid_fraction']:.0%} of each
document (from a paragraph break) is validation. train.txt sha256 `{files['train.txt']['sha256']}`,
valid.txt sha256 `{files['valid.txt']['sha256']}`.

Licences:
{sources}

## Validation (held-out split, nats per byte)
- Windows of {summary['seq_len']} bytes, each read from scratch: **{summary['valid_loss_windowed']:.4f}**
{streaming_line}
## Decay
{decay_text}

## Known limits
- Trained on one author's (or a few) public-domain books: it continues text in that style and
  knows nothing else; it has no chat training (chat requests get a plain role-prefixed prompt).
- Byte-level and small: words are mostly spelled right, sentences wander, facts are invented.
- Training windows were {summary['seq_len']} bytes; longer documents are read through the fixed-size
  state, which forgets at each head's decay rate.
"""
    (directory / CARD_FILE).write_text(text)
