"""The LoRA layer, implemented in the project (as the original work did): a frozen nn.Linear plus
a trainable low-rank update,

    y = W x + b + (alpha / r) * B (A dropout(x)),   A: [r, in], B: [out, r]

A starts Kaiming-uniform and B at zero, so training starts from the base model exactly. The
weights are saved in the PEFT format (peft_format.py) that vistyle loads at run time.
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from peft_format import Tensor, is_attention_projection, is_target


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        if r <= 0:
            raise ValueError("r must be positive")
        self.base = base
        for parameter in base.parameters():
            parameter.requires_grad_(False)
        self.r = r
        self.alpha = alpha
        self.scale = alpha / r
        device = base.weight.device
        # Trainable weights stay float32 whatever the base dtype; autocast does the mixed precision.
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, dtype=torch.float32, device=device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, dtype=torch.float32, device=device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    # Attention code sometimes reads these from its projections (e.g. for dtype checks).
    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self):
        return self.base.bias

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        update = F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B) * self.scale
        return y + update.to(y.dtype)

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}"


def inject_lora(model: nn.Module, targets: Sequence[str], r: int, alpha: float, dropout: float) -> Dict[str, LoRALinear]:
    """Wraps every attention projection of `model` whose name matches `targets` (PEFT's rule: the
    full name or a dot-separated suffix). Returns the wrapped modules by their original names."""
    chosen = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and is_target(name, targets) and is_attention_projection(name)
    ]
    if not chosen:
        raise ValueError(f"no attention projection matches the targets {list(targets)}")
    wrapped: Dict[str, LoRALinear] = {}
    for name, module in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = LoRALinear(module, r, alpha, dropout)
        setattr(parent, child, layer)
        wrapped[name] = layer
    return wrapped


def lora_parameters(modules: Dict[str, LoRALinear]) -> Iterable[nn.Parameter]:
    for layer in modules.values():
        yield layer.lora_A
        yield layer.lora_B


def _float32_bytes(t: torch.Tensor) -> Tensor:
    data = t.detach().to(torch.float32).contiguous().cpu()
    return list(data.shape), data.numpy().astype("<f4", copy=False).tobytes()


def lora_weights(modules: Dict[str, LoRALinear]) -> Dict[str, Tuple[Tensor, Tensor]]:
    """module name -> ((A shape, A bytes), (B shape, B bytes)), float32 little-endian, B unscaled
    (PEFT stores B as trained; the loader applies lora_alpha / r)."""
    return {name: (_float32_bytes(layer.lora_A), _float32_bytes(layer.lora_B)) for name, layer in modules.items()}


def config_target_modules(model_module_names: Iterable[str], wrapped: Iterable[str], targets: Sequence[str]) -> list:
    """target_modules for adapter_config.json. The short names when they cover exactly the modules
    trained (so the file reads like any PEFT adapter); otherwise the exact module names, so that a
    loader expanding the short names would not expect modules that were never trained."""
    wrapped = set(wrapped)
    would_match = {n for n in model_module_names if is_target(n, targets) and is_attention_projection(n)}
    if would_match == wrapped:
        return sorted(set(targets))
    return sorted(wrapped)
