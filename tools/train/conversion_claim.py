#!/usr/bin/env python3
"""The paper's claim at small scale: DiJiang obtained by converting a trained Transformer and
fine-tuning it on a tenth of the tokens is close to both a Transformer and a DiJiang model
trained on all of them. Runs (skipping those already finished, resuming interrupted ones):

  (a) softmax GPT-NeoX, `small` shape, from scratch on N tokens
  (b) DiJiang, same shape, from scratch on N tokens
  (c) (a) transformed to DiJiang (the paper's transform step) and fine-tuned on N/10 tokens

then writes bench/results/conversion-claim.{json,md}: validation loss of each on the same
held-out split, read in windows of the training length (what every kind can be compared on),
and for the DiJiang rows also read as one document through the recurrent state.

    python3 tools/train/conversion_claim.py --corpus data/corpus --runs runs --tokens 10e6
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent.parent / "bench" / "results"


def run(name: str, out: Path, arguments: list[str]) -> dict:
    summary = out / "training.json"
    if not summary.is_file():
        print(f"== {name}: python3 tools/train/train.py {' '.join(arguments)}", flush=True)
        subprocess.run([sys.executable, str(HERE / "train.py"), *arguments], check=True)
    return json.loads(summary.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--runs", type=Path, required=True, help="folder for the three checkpoints")
    parser.add_argument("--tokens", type=float, default=10e6, help="N (default 10e6)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of (a) and (b)")
    parser.add_argument("--finetune-lr", type=float, default=1e-3, help="peak learning rate of (c)")
    args = parser.parse_args()
    command = " ".join(["python3", "tools/train/conversion_claim.py", *sys.argv[1:]])
    load_at_start = os.getloadavg()[0]
    common = ["--corpus", str(args.corpus), "--preset", "small"]
    n = args.tokens
    a_dir, b_dir, c_dir = args.runs / "a-softmax", args.runs / "b-dijiang", args.runs / "c-converted"
    rows = [
        ("(a) softmax from scratch", run("a", a_dir, [*common, "--out", str(a_dir), "--attention", "softmax", "--tokens", f"{n:g}", "--lr", f"{args.lr:g}"])),
        ("(b) DiJiang from scratch", run("b", b_dir, [*common, "--out", str(b_dir), "--tokens", f"{n:g}", "--lr", f"{args.lr:g}"])),
        ("(c) (a) converted to DiJiang, fine-tuned", run("c", c_dir, ["--corpus", str(args.corpus), "--out", str(c_dir), "--init-from", str(a_dir), "--attention", "dijiang", "--tokens", f"{n / 10:g}", "--lr", f"{args.finetune_lr:g}", "--warmup", "25"])),
    ]
    baseline = rows[0][1]["valid_loss_windowed"]
    table = []
    for label, summary in rows:
        table.append(
            {
                "run": label,
                "tokens": summary["tokens_seen"],
                "minutes": round(summary["train_seconds"] / 60, 1),
                "tokens_per_second": summary["tokens_per_second"],
                "valid_loss_windowed": round(summary["valid_loss_windowed"], 4),
                "vs_softmax": round(summary["valid_loss_windowed"] / baseline - 1, 4),
                "valid_loss_streaming": round(summary["valid_loss_streaming"], 4) if "valid_loss_streaming" in summary else None,
                "command": summary["command"],
            }
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    load_at_end = os.getloadavg()[0]
    summary_json = {
        "command": command,
        "loadAverageAtStart": round(load_at_start, 2),
        "loadAverageAtEnd": round(load_at_end, 2),
        "tokens": n,
        "rows": table,
    }
    (RESULTS / "conversion-claim.json").write_text(json.dumps(summary_json, indent=2) + "\n")
    seq_len = rows[0][1]["seq_len"]
    lines = [
        "# Conversion claim at small scale",
        "",
        f"`small` shape (hidden 256, 4 layers, 8 heads, byte vocabulary), Austen's novels, N = {n:,.0f} training bytes.",
        f"Validation: the fixed held-out split ({rows[0][1]['valid_tokens']:,} bytes), nats per byte; windowed = windows of {seq_len} bytes",
        "each read from scratch (comparable across attention kinds); streaming = the whole split as one document",
        "through the recurrent state (what `dijiang score` computes).",
        "",
        f"Command: `{command}`. 1-minute load average {load_at_start:.2f} at start, {load_at_end:.2f} at the end",
        "(the runs share the machine's cores with anything else running).",
        "",
        "| run | tokens | minutes | tokens/s | valid (windowed) | vs (a) | valid (streaming) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in table:
        streaming = f"{row['valid_loss_streaming']:.4f}" if row["valid_loss_streaming"] is not None else "-"
        lines.append(
            f"| {row['run']} | {row['tokens']:,} | {row['minutes']} | {row['tokens_per_second']:,.0f} | {row['valid_loss_windowed']:.4f} | {row['vs_softmax']:+.1%} | {streaming} |"
        )
    lines += ["", "Commands:", "", *[f"- {row['run']}: `{row['command']}`" for row in table], ""]
    lines.append(f"Reproduce all three: `python3 tools/train/conversion_claim.py --corpus CORPUS --runs RUNS --tokens {n:g}`")
    (RESULTS / "conversion-claim.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
