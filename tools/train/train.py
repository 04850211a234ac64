#!/usr/bin/env python3
"""Trains a DiJiang (or softmax baseline) GPT-NeoX language model and writes a Hugging Face style
checkpoint that `npx dijiang model convert` serves unchanged.

From scratch:     train.py --corpus data/corpus --out ckpt --preset small --tokens 10e6
Fine-tune/convert: train.py --corpus data/corpus --out ckpt --init-from PYTHIA_OR_OWN_CKPT --tokens 1e6
                  (a softmax/Pythia checkpoint gets the paper's transform step first)
Resume:           the same command again: it continues from OUT/trainer-state.pt.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dijiang_train.card import write_model_card  # noqa: E402
from dijiang_train.checkpoint import export_checkpoint, load_checkpoint  # noqa: E402
from dijiang_train.data import Batches, load_training_stream, scoring_stream, streaming_nll, windowed_nll  # noqa: E402
from dijiang_train.model import BYTE_VOCAB_SIZE, PRESETS, GPTNeoX, init_weights, preset_config  # noqa: E402

STATE_FILE = "trainer-state.pt"
LOG_FILE = "train-log.jsonl"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="folder written by prepare_corpus.py")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder (created)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small", help="shape when training from scratch (default small)")
    parser.add_argument("--attention", choices=["dijiang", "softmax"], default=None, help="default: dijiang from scratch, the checkpoint's own with --init-from (dijiang turns a softmax checkpoint into DiJiang)")
    parser.add_argument("--init-from", type=Path, default=None, help="start from this checkpoint folder (config.json + safetensors)")
    parser.add_argument("--tokens", type=float, required=True, help="training tokens (bytes) to see, e.g. 10e6")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    parser.add_argument("--min-lr-ratio", type=float, default=0.1, help="cosine decay ends at lr * this (default 0.1)")
    parser.add_argument("--warmup", type=int, default=100, help="linear warm-up steps (default 100)")
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--fixed-decay", action="store_true", help="keep DiJiang's per-head decay at its initial value")
    parser.add_argument("--chunk", type=int, default=64, help="DiJiang chunk length of the chunked form (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32", help="autocast precision on CUDA (default fp32)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1; OpenBLAS threads are OPENBLAS_NUM_THREADS)")
    parser.add_argument("--eval-every", type=int, default=250, help="steps between validation estimates")
    parser.add_argument("--eval-windows", type=int, default=64, help="validation windows per estimate")
    parser.add_argument("--save-every", type=int, default=250, help="steps between resumable saves")
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--stop-after", type=int, default=None, help="stop after this many steps in this run (state saved; the same command resumes)")
    parser.add_argument("--name", default=None, help="model name for the card (default: the out folder's name)")
    return parser.parse_args(argv)


def learning_rate(args, step: int, total: int) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, total - args.warmup)
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def build_model(args) -> tuple[GPTNeoX, str]:
    if args.init_from is not None:
        model, origin = load_checkpoint(args.init_from, args.attention, args.chunk, args.seed)
        if model.config.vocab_size != BYTE_VOCAB_SIZE:
            raise SystemExit(
                f"{args.init_from}: vocab_size {model.config.vocab_size} is not the byte vocabulary ({BYTE_VOCAB_SIZE}); "
                "this trainer feeds bytes, so a checkpoint with its own tokenizer (Pythia's) cannot be trained on its corpus"
            )
        return model, origin
    model = GPTNeoX(preset_config(args.preset, args.attention or "dijiang"), args.chunk)
    init_weights(model, args.seed)
    return model, "scratch"


def optimizer_for(model: GPTNeoX, args) -> torch.optim.Optimizer:
    decayed = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2 and "embed_in" not in n]
    plain = [p for n, p in model.named_parameters() if p.requires_grad and not (p.dim() >= 2 and "embed_in" not in n)]
    return torch.optim.AdamW(
        [{"params": decayed, "weight_decay": args.weight_decay}, {"params": plain, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
    )


def log(line: str) -> None:
    print(line, flush=True)


def main(argv=None) -> None:
    args = parse_args(argv)
    for name in ("tokens", "batch_size", "seq_len", "lr", "threads", "chunk", "eval_every", "save_every", "log_every"):
        if not getattr(args, name) > 0:
            raise SystemExit(f"--{name.replace('_', '-')} must be positive")
    for name in ("corpus.json", "train.txt", "valid.txt"):
        if not (args.corpus / name).is_file():
            raise SystemExit(f"--corpus {args.corpus}: no {name} (write the corpus with tools/train/prepare_corpus.py)")
    torch.set_num_threads(args.threads)
    # Attention probabilities and decay weights reach float32's subnormal range, which x86 CPUs
    # handle in microcode, many times slower; flushing to zero changes results by under 1e-38.
    torch.set_flush_denormal(True)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: PyTorch sees no CUDA device")
    if args.precision != "fp32" and device.type != "cuda":
        raise SystemExit(f"--precision {args.precision} needs --device cuda")
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python3 tools/train/train.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))

    model, origin = build_model(args)
    if args.fixed_decay and model.config.attention == "dijiang":
        for attention in model.attention_layers():
            attention.decay_log_rate.requires_grad_(False)
    model.to(device)
    optimizer = optimizer_for(model, args)
    tokens_per_step = args.batch_size * args.seq_len
    total_steps = max(1, math.ceil(args.tokens / tokens_per_step))
    batches = Batches(load_training_stream(args.corpus), args.batch_size, args.seq_len, args.seed)
    valid = scoring_stream((args.corpus / "valid.txt").read_text(encoding="utf-8"))
    scaler = torch.cuda.amp.GradScaler(enabled=args.precision == "fp16")
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[args.precision]
    autocast = (lambda: torch.autocast("cuda", dtype=autocast_dtype)) if autocast_dtype else contextlib.nullcontext

    step, elapsed, loss_average = 0, 0.0, None
    history: list[dict] = []
    state_path = args.out / STATE_FILE
    if state_path.is_file():
        saved = torch.load(state_path, map_location=device)
        if saved["total_steps"] != total_steps or saved["attention"] != model.config.attention:
            raise SystemExit(f"{state_path} is from a different run ({saved['total_steps']} steps, {saved['attention']}); remove it to start over")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        batches.generator.set_state(saved["batch_rng"])
        step, elapsed, loss_average, history, origin = saved["step"], saved["elapsed"], saved["loss_average"], saved["history"], saved["origin"]
        log(f"resumed from {state_path} at step {step}/{total_steps}")

    parameters = sum(p.numel() for p in model.parameters())
    log(f"{model.config.attention} model, {parameters:,} parameters ({origin}); {total_steps} steps of {tokens_per_step} tokens on {device}")
    model.train()
    started = time.time() - elapsed
    last_log = time.time()
    last_step = step
    stop_at = total_steps if args.stop_after is None else min(total_steps, step + args.stop_after)
    with open(args.out / LOG_FILE, "a") as log_file:
        while step < stop_at:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(args, step, total_steps)
            inputs, targets, positions = batches.next(device)
            with autocast():
                logits, _ = model(inputs, positions)
                loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            loss_average = float(loss) if loss_average is None else 0.98 * loss_average + 0.02 * float(loss)
            record = None
            if step % args.eval_every == 0 or step == total_steps:
                total, count = windowed_nll(model, valid, args.seq_len, device, max_windows=args.eval_windows)
                record = {"step": step, "tokens": step * tokens_per_step, "train_loss": round(loss_average, 4), "valid_loss": round(total / count, 4), "seconds": round(time.time() - started, 1)}
                history.append(record)
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
            if step % args.log_every == 0 or record is not None:
                now = time.time()
                rate = (step - last_step) * tokens_per_step / max(1e-9, now - last_log)
                eta = (total_steps - step) * tokens_per_step / max(1e-9, rate)
                valid_text = f" valid {record['valid_loss']:.4f}" if record else ""
                log(f"step {step}/{total_steps} tokens {step * tokens_per_step / 1e6:.2f}M {rate:,.0f} tok/s loss {loss_average:.4f}{valid_text} lr {optimizer.param_groups[0]['lr']:.2e} eta {eta / 60:.1f} min")
                last_log, last_step = now, step
            if step % args.save_every == 0 or step == stop_at:
                torch.save(
                    {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "batch_rng": batches.generator.get_state(), "step": step, "total_steps": total_steps, "elapsed": time.time() - started, "loss_average": loss_average, "history": history, "attention": model.config.attention, "origin": origin},
                    state_path,
                )

    if step < total_steps:
        log(f"stopped at step {step}/{total_steps}; run the same command to resume from {state_path}")
        return
    seconds = time.time() - started
    log("final validation over the whole held-out split")
    windowed_total, windowed_count = windowed_nll(model, valid, args.seq_len, device)
    summary = {
        "command": command,
        "attention": model.config.attention,
        "origin": origin,
        "init_from": str(args.init_from) if args.init_from else None,
        "parameters": parameters,
        "tokens_seen": total_steps * tokens_per_step,
        "steps": total_steps,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "lr": args.lr,
        "seed": args.seed,
        "device": str(device),
        "precision": args.precision,
        "train_seconds": round(seconds, 1),
        "tokens_per_second": round(total_steps * tokens_per_step / seconds, 1),
        "valid_tokens": windowed_count,
        "valid_loss_windowed": windowed_total / windowed_count,
        "history": history,
    }
    if model.config.attention == "dijiang":
        stream_total, stream_count = streaming_nll(model, valid, device)
        summary["valid_loss_streaming"] = stream_total / stream_count
        summary["valid_total_nll_streaming"] = stream_total
    model.to("cpu")
    hf_config = export_checkpoint(model, args.out)
    (args.out / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_model_card(args.out, args.name or args.out.resolve().name, summary, hf_config, json.loads((args.corpus / "corpus.json").read_text()))
    streaming = f", streaming {summary['valid_loss_streaming']:.4f}" if "valid_loss_streaming" in summary else ""
    log(f"done: valid {summary['valid_loss_windowed']:.4f} nats/byte (windows of {args.seq_len}){streaming}; {summary['tokens_per_second']:,.0f} tok/s; checkpoint in {args.out}")


if __name__ == "__main__":
    main()
