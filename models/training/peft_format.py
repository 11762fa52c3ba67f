"""The Hugging Face PEFT adapter format, written with the standard library only.

A PEFT LoRA adapter is a folder with
  adapter_config.json        {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": [...], ...}
  adapter_model.safetensors  base_model.model.<module>.lora_A.weight  [r, in]
                             base_model.model.<module>.lora_B.weight  [out, r]
where <module> is the module's name in the transformers model that was trained (for LLaVA on
transformers <= 4.51: language_model.model.layers.N.self_attn.q_proj and
vision_tower.vision_model.encoder.layers.N.self_attn.q_proj; >= 4.52 adds a leading `model.`).
vistyle's loader (models/lora/loader.ts) reads exactly this. The trainer (train.py) hands this
module float32 bytes, so the format code has no torch dependency and is tested without it.

Run as a script, it writes a deterministic example adapter from a JSON spec on stdin; the
TypeScript test suite uses that to check that vistyle loads what this code writes.
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

PEFT_PREFIX = "base_model.model."
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"

# The seed's targets: q/k/v/o of the Qwen2 decoder, q/k/v/out of the SigLIP vision tower.
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "out_proj")


def lora_weight_key(module: str, which: str) -> str:
    """The safetensors key of a module's LoRA A or B weight."""
    if which not in ("A", "B"):
        raise ValueError(f"which must be 'A' or 'B', not {which!r}")
    if module.startswith(PEFT_PREFIX):
        raise ValueError(f"module name must not carry the PEFT prefix: {module}")
    return f"{PEFT_PREFIX}{module}.lora_{which}.weight"


def is_target(module: str, targets: Sequence[str]) -> bool:
    """PEFT's list rule: a target matches a module's full name or a dot-separated suffix of it."""
    return any(module == t or module.endswith("." + t) for t in targets)


def is_attention_projection(module: str) -> bool:
    """vistyle applies LoRA to attention projections only (not the projector, not the MLPs)."""
    if "multi_modal_projector" in module or ".mlp." in module:
        return False
    return ".self_attn." in module and module.rsplit(".", 1)[-1] in DEFAULT_TARGETS


def adapter_config(
    *,
    r: int,
    lora_alpha: float,
    target_modules: Sequence[str],
    base_model: str = "llava-hf/llava-interleave-qwen-0.5b-hf",
    lora_dropout: float = 0.0,
    rank_pattern: Mapping[str, int] | None = None,
    alpha_pattern: Mapping[str, float] | None = None,
) -> Dict[str, object]:
    """adapter_config.json as PEFT writes it for a LoRA adapter (inference mode)."""
    if r <= 0:
        raise ValueError("r must be positive")
    return {
        "alpha_pattern": dict(alpha_pattern or {}),
        "auto_mapping": None,
        "base_model_name_or_path": base_model,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "layers_pattern": None,
        "layers_to_transform": None,
        "lora_alpha": lora_alpha,
        "lora_dropout": lora_dropout,
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": r,
        "rank_pattern": dict(rank_pattern or {}),
        "revision": None,
        "target_modules": list(target_modules),
        "task_type": None,
        "use_dora": False,
        "use_rslora": False,
    }


Tensor = Tuple[Sequence[int], bytes]  # (shape, little-endian float32 bytes)


def write_safetensors(path: str, tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None) -> None:
    """Writes float32 tensors in the safetensors format (sorted by name, as the library does)."""
    header: Dict[str, object] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    names = sorted(tensors)
    for name in names:
        shape, data = tensors[name]
        count = 1
        for dim in shape:
            count *= int(dim)
        if len(data) != count * 4:
            raise ValueError(f"{name}: {len(data)} bytes for shape {list(shape)} (float32)")
        header[name] = {"dtype": "F32", "shape": [int(d) for d in shape], "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * ((8 - (len(encoded) + 8) % 8) % 8)  # data starts 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for name in names:
            f.write(tensors[name][1])
    os.replace(tmp, path)


def save_adapter(out_dir: str, weights: Mapping[str, Tuple[Tensor, Tensor]], config: Mapping[str, object]) -> None:
    """Writes a PEFT adapter: `weights` maps module name -> ((A shape, A bytes), (B shape, B bytes))."""
    os.makedirs(out_dir, exist_ok=True)
    tensors: Dict[str, Tensor] = {}
    r = int(config["r"])  # type: ignore[arg-type]
    rank_pattern = config.get("rank_pattern") or {}
    for module, (a, b) in weights.items():
        rank = int(rank_pattern.get(module, r))  # type: ignore[union-attr]
        if len(a[0]) != 2 or len(b[0]) != 2 or a[0][0] != rank or b[0][1] != rank:
            raise ValueError(f"{module}: A {list(a[0])} / B {list(b[0])} do not have rank {rank}")
        tensors[lora_weight_key(module, "A")] = a
        tensors[lora_weight_key(module, "B")] = b
    write_safetensors(os.path.join(out_dir, WEIGHTS_FILE), tensors)
    with open(os.path.join(out_dir, CONFIG_FILE), "w", encoding="utf-8") as f:
        json.dump(dict(config), f, indent=2, sort_keys=True)
        f.write("\n")


def float32_bytes(values: Iterable[float]) -> bytes:
    values = list(values)
    return struct.pack(f"<{len(values)}f", *values)


def example_value(seed: int, module_index: int, which: str, i: int) -> float:
    """The deterministic values of the example adapter (the TS test computes the same)."""
    return 0.25 * math.sin(seed + 7 * module_index + (0.5 if which == "B" else 0.0) + 0.37 * i)


def write_example_adapter(spec: Mapping[str, object]) -> None:
    """spec: {"out": dir, "r": 4, "alpha": 8, "seed": 1, "modules": [{"name", "in", "out"}, ...]}"""
    r = int(spec["r"])  # type: ignore[arg-type]
    seed = int(spec.get("seed", 1))  # type: ignore[arg-type]
    weights = {}
    names: List[str] = []
    for index, module in enumerate(spec["modules"]):  # type: ignore[union-attr]
        name, fan_in, fan_out = module["name"], int(module["in"]), int(module["out"])
        if not is_attention_projection(name):
            raise ValueError(f"{name} is not an attention projection")
        a = float32_bytes(example_value(seed, index, "A", i) for i in range(r * fan_in))
        b = float32_bytes(example_value(seed, index, "B", i) for i in range(fan_out * r))
        weights[name] = (([r, fan_in], a), ([fan_out, r], b))
        names.append(name)
    short = sorted({n.rsplit(".", 1)[-1] for n in names})
    config = adapter_config(r=r, lora_alpha=float(spec["alpha"]), target_modules=short)  # type: ignore[arg-type]
    save_adapter(str(spec["out"]), weights, config)


if __name__ == "__main__":
    write_example_adapter(json.load(sys.stdin))
