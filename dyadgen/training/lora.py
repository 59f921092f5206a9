"""Optional LoRA on the backbone (``train.lora_rank > 0``) through peft, and the merge back to plain
weights for the inference folder (which holds an ordinary DyadGen, so inference never needs peft).

The adapters are injected in place (``peft.inject_adapter_in_model``): the model keeps its class and
module tree, only the targeted Linear layers gain ``base_layer`` / ``lora_A`` / ``lora_B``.
"""

from __future__ import annotations

import torch
from torch import nn

from dyadgen.errors import UserError


def add_lora(model: nn.Module, *, rank: int, alpha: float, targets: tuple[str, ...]) -> int:
    """Inject LoRA adapters into the pretrained language model (``model.backbone.lm``) and freeze
    its weights. Returns the number of adapted layers. Everything new in DyadGen keeps training."""
    from peft import LoraConfig, inject_adapter_in_model  # optional (the train extra): imported on first use

    backbone = getattr(getattr(model, "backbone", None), "lm", None)
    if backbone is None:
        raise UserError("train.lora_rank > 0 needs a model with a pretrained .backbone.lm")
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=list(targets), lora_dropout=0.0)
    try:
        inject_adapter_in_model(config, backbone)
    except ValueError as err:
        raise UserError(f"train.lora_targets={','.join(targets)}: {err}") from None
    adapted = 0
    for name, param in backbone.named_parameters():
        param.requires_grad = "lora_" in name
        adapted += name.endswith("lora_A.default.weight")
    return adapted


def has_lora(model: nn.Module) -> bool:
    return any("lora_A" in name for name, _ in model.named_parameters())


@torch.no_grad()
def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of ``model`` with every LoRA layer folded into its base weight
    (``W + scale * B @ A``), under the key names of the model without adapters."""
    from peft.tuners.lora import LoraLayer  # optional (the train extra): imported on first use

    merged: dict[str, torch.Tensor] = {}
    lora_layers = {name: module for name, module in model.named_modules() if isinstance(module, LoraLayer)}
    for key, value in model.state_dict().items():
        if ".lora_" in key:
            continue
        owner = next((n for n in lora_layers if key.startswith(n + ".base_layer.")), None)
        if owner is None:
            merged[key] = value.detach().clone()
            continue
        plain = key.replace(".base_layer.", ".", 1)
        if key.endswith(".base_layer.weight"):
            layer = lora_layers[owner]
            delta = sum(layer.get_delta_weight(a) for a in layer.active_adapters)
            merged[plain] = (value + delta.to(value.dtype)).detach().clone()
        else:
            merged[plain] = value.detach().clone()
    return merged
