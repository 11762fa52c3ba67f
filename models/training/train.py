"""Train one style's LoRA adapter for llava-interleave-qwen-0.5b and save it in the PEFT format
that `vistyle` loads (`vistyle ask --adapter DIR`, or `adapter:` in the styles file).

    python models/training/train.py --data grumpy.jsonl --out adapters/grumpy \
        --system-prompt "$(vistyle styles --json | jq -r '.styles[] | select(.id=="grumpy") | .systemPrompt')"

The data is what `vistyle data make` writes (or the original work's JSON arrays). The loss covers
only the answer: everything up to and including the assistant header is masked. Defaults follow
the original work (rank 8, alpha 16, q/k/v/o of the decoder and q/k/v/out of the vision tower,
2 epochs, batch 4) except the learning rate, 2e-4, which is the usual LoRA rate (the original's
2e-5 barely moves a rank-8 adapter in 500 steps).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from typing import Dict, List, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from data import ImageCache, Sample, read_samples, split_by_image, system_prompt_problem  # noqa: E402
from labels import IGNORE_INDEX, answer_labels, assistant_header_ids, expand_image_tokens, image_feature_count, pad_right  # noqa: E402
from lora import config_target_modules, inject_lora, lora_parameters, lora_weights  # noqa: E402
from peft_format import DEFAULT_TARGETS, adapter_config, save_adapter  # noqa: E402


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="llava-hf/llava-interleave-qwen-0.5b-hf", help="hub id or local checkpoint folder")
    p.add_argument("--data", required=True, help="JSONL from `vistyle data make`, or a JSON array of {question, ans, url}")
    p.add_argument("--out", required=True, help="adapter folder to write")
    p.add_argument("--system-prompt", default=None, help="the style's system prompt, rendered as at run time")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--alpha", type=float, default=16.0)
    p.add_argument("--dropout", type=float, default=0.05)
    p.add_argument("--targets", default=",".join(DEFAULT_TARGETS), help="PEFT-style target names (comma-separated)")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimiser step")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup", type=float, default=0.03, help="fraction of steps with a linear warm-up")
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--max-length", type=int, default=1536, help="longer examples are skipped, not cut")
    p.add_argument("--eval-fraction", type=float, default=0.05, help="share of photos held out for the eval loss")
    p.add_argument("--eval-every", type=int, default=100, help="optimiser steps between eval losses (0: per epoch only)")
    p.add_argument("--dtype", choices=["auto", "bf16", "fp16", "fp32"], default="auto")
    p.add_argument("--gradient-checkpointing", action="store_true", help="less memory, ~30%% slower")
    p.add_argument("--image-cache", default=os.path.expanduser("~/.vistyle/image-cache"))
    p.add_argument("--image-workers", type=int, default=8)
    p.add_argument("--retry-failed", action="store_true", help="try photos that failed in an earlier run again")
    p.add_argument("--limit", type=int, default=0, help="use only the first N samples (0: all)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--log-every", type=int, default=10)
    args = p.parse_args(argv)
    problem = system_prompt_problem(args.system_prompt)
    if problem:
        p.error(problem)
    return args


def pick_dtype(name: str) -> torch.dtype:
    if name == "fp32":
        return torch.float32
    if name == "bf16":
        return torch.bfloat16
    if name == "fp16":
        return torch.float16
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


class Encoder:
    """Renders a sample with the checkpoint's chat template and builds input ids, pixels and labels.

    The image placeholder is expanded here, to exactly as many tokens as the vision tower gives
    feature rows, instead of by the processor (whose count is off by one for SigLIP towers in some
    transformers versions)."""

    def __init__(self, processor, model_config, system_prompt: str | None, max_length: int) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.system_prompt = system_prompt
        self.max_length = max_length
        vision = model_config.vision_config
        self.image_token_id = int(getattr(model_config, "image_token_index", None) or getattr(model_config, "image_token_id"))
        self.image_tokens = image_feature_count(vision.image_size, vision.patch_size, model_config.vision_feature_select_strategy)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.tokenizer.eos_token_id)
        self.too_long: set = set()  # (url, question) of the examples skipped for --max-length
        probe = self.messages("?")
        self.header = assistant_header_ids(
            self.tokenize,
            processor.apply_chat_template(probe, add_generation_prompt=True),
            processor.apply_chat_template(probe, add_generation_prompt=False),
        )

    def tokenize(self, text: str) -> List[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def messages(self, question: str, answer: str | None = None) -> List[dict]:
        messages: List[dict] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]})
        if answer is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return messages

    def text(self, sample: Sample) -> str:
        return self.processor.apply_chat_template(self.messages(sample.question, sample.answer), add_generation_prompt=False)

    def batch(self, items: Sequence[Tuple[Sample, str]]) -> Dict[str, torch.Tensor] | None:
        """The batch of the examples that fit in --max-length (the others are skipped, never cut);
        None when none fits."""
        sequences = []
        paths = []
        for sample, path in items:
            ids = expand_image_tokens(self.tokenize(self.text(sample)), self.image_token_id, self.image_tokens)
            if len(ids) > self.max_length:
                self.too_long.add((sample.url, sample.question))
                continue
            sequences.append(ids)
            paths.append(path)
        if not sequences:
            return None
        ids, mask = pad_right(sequences, self.pad_id)
        labels = [answer_labels(row, self.header, row_mask, IGNORE_INDEX) for row, row_mask in zip(ids, mask)]
        images = []
        for path in paths:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        pixels = self.processor.image_processor(images, return_tensors="pt")["pixel_values"]
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "attention_mask": torch.tensor(mask, dtype=torch.long),
            "pixel_values": pixels,
            "labels": torch.tensor(labels, dtype=torch.long),
        }


def batches(items: List[Tuple[Sample, str]], size: int, rng: random.Random | None) -> List[List[Tuple[Sample, str]]]:
    order = list(items)
    if rng is not None:
        rng.shuffle(order)
    return [order[i : i + size] for i in range(0, len(order), size)]


def to_device(inputs: Dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype) -> Dict[str, torch.Tensor]:
    out = {}
    for key, value in inputs.items():
        value = value.to(device)
        out[key] = value.to(dtype) if key == "pixel_values" else value
    return out


@torch.no_grad()
def eval_loss(model, encoder: Encoder, items, batch_size: int, device, dtype) -> float:
    """Token-weighted mean loss over the held-out answers."""
    model.eval()
    total, tokens = 0.0, 0
    for group in batches(items, batch_size, None):
        inputs = encoder.batch(group)
        if inputs is None:
            continue
        inputs = to_device(inputs, device, dtype)
        with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32):
            out = model(**inputs)
        n = int((inputs["labels"][:, 1:] != IGNORE_INDEX).sum())
        total += float(out.loss) * n
        tokens += n
    model.train()
    return total / max(1, tokens)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = pick_dtype(args.dtype)
    if device.type == "cpu":
        print("warning: no GPU; training on the CPU will be very slow", file=sys.stderr)

    samples = read_samples(args.data)
    if args.limit:
        samples = samples[: args.limit]
    cache = ImageCache(args.image_cache, retry_failed=args.retry_failed)
    ready, skipped = cache.fetch_all(samples, args.image_workers)
    print(f"{len(ready)} samples with photos ({skipped} skipped: photo unavailable)")
    if len(ready) < 2:
        print("not enough samples to train on", file=sys.stderr)
        return 1
    train_samples, eval_samples = split_by_image([s for s, _ in ready], args.eval_fraction, args.seed)
    paths = {s.url: p for s, p in ready}
    train = [(s, paths[s.url]) for s in train_samples]
    held_out = [(s, paths[s.url]) for s in eval_samples]
    print(f"train {len(train)}, eval {len(held_out)} (by photo)")

    processor = AutoProcessor.from_pretrained(args.model)
    model = LlavaForConditionalGeneration.from_pretrained(args.model, torch_dtype=dtype).to(device)
    model.requires_grad_(False)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    module_names = [name for name, _ in model.named_modules()]
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    wrapped = inject_lora(model, targets, args.rank, args.alpha, args.dropout)
    params = list(lora_parameters(wrapped))
    print(f"LoRA on {len(wrapped)} projections, {sum(p.numel() for p in params) / 1e6:.2f}M trainable parameters")
    encoder = Encoder(processor, model.config, args.system_prompt, args.max_length)

    steps_per_epoch = math.ceil(len(train) / (args.batch_size * args.grad_accum))
    total_steps = max(1, math.ceil(steps_per_epoch * args.epochs))
    warmup = max(1, int(total_steps * args.warmup))
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min(1.0, (step + 1) / warmup) * max(0.0, 0.5 * (1 + math.cos(math.pi * min(1.0, step / total_steps)))),
    )
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    rng = random.Random(args.seed)

    def save(folder: str, note: str) -> None:
        config = adapter_config(
            r=args.rank,
            lora_alpha=args.alpha,
            target_modules=config_target_modules(module_names, wrapped.keys(), targets),
            base_model=args.model,
            lora_dropout=args.dropout,
        )
        save_adapter(folder, lora_weights(wrapped), config)
        print(f"saved {note} adapter to {folder}")

    model.train()
    step, micro, started = 0, 0, time.time()
    running, running_n = 0.0, 0
    best = math.inf
    epoch = 0
    while step < total_steps:
        epoch += 1
        micro_at_start = micro
        for group in batches(train, args.batch_size, rng):
            if step >= total_steps:
                break
            inputs = encoder.batch(group)
            if inputs is None:
                continue
            inputs = to_device(inputs, device, dtype)
            with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32):
                loss = model(**inputs).loss
            scaler.scale(loss / args.grad_accum).backward()
            running += float(loss)
            running_n += 1
            micro += 1
            if micro % args.grad_accum:
                continue
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            step += 1
            if step % args.log_every == 0:
                elapsed = time.time() - started
                print(f"step {step}/{total_steps} epoch {epoch} loss {running / running_n:.4f} lr {schedule.get_last_lr()[0]:.2e} {elapsed / step:.2f}s/step")
                running, running_n = 0.0, 0
            if held_out and args.eval_every and step % args.eval_every == 0:
                value = eval_loss(model, encoder, held_out, args.batch_size, device, dtype)
                print(f"step {step}: eval loss {value:.4f}")
                if value < best:
                    best = value
                    save(os.path.join(args.out, "best"), f"best (eval loss {value:.4f})")
        if micro == micro_at_start:
            print(f"every example is longer than --max-length {args.max_length}; nothing to train on", file=sys.stderr)
            return 1
        if held_out:
            value = eval_loss(model, encoder, held_out, args.batch_size, device, dtype)
            print(f"epoch {epoch}: eval loss {value:.4f}")
            if value < best:
                best = value
                save(os.path.join(args.out, "best"), f"best (eval loss {value:.4f})")
    if encoder.too_long:
        print(f"{len(encoder.too_long)} examples skipped: longer than --max-length {args.max_length}")
    save(args.out, "final")
    with open(os.path.join(args.out, "training_args.json"), "w", encoding="utf-8") as f:
        json.dump({**vars(args), "steps": step, "best_eval_loss": None if best == math.inf else best}, f, indent=2)
    if torch.cuda.is_available():
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
