"""Optional LoRA on the tiny DyadGen's backbone: only adapters and new parts train, and the merged
weights make a plain DyadGen that computes exactly what the adapted one does."""

import torch

from dyadgen.config import load_config
from dyadgen.models import DyadBatch, DyadGen
from dyadgen.training.lora import add_lora, has_lora, merged_state_dict
from dyadgen.training.optim import param_groups


def _model(cfg):
    torch.manual_seed(0)
    return DyadGen.from_config(cfg, num_audio_codes=16, latent_shape=(4, 4, 4))


def _batch() -> DyadBatch:
    g = torch.Generator().manual_seed(0)
    B, P, T = 1, 2, 8
    return DyadBatch(tokens=torch.randint(0, 16, (B, P, T), generator=g),
                     latents=torch.randn(B, P, T, 4, 4, 4, generator=g),
                     refs=torch.randn(B, P, 4, 4, 4, generator=g),
                     mask=torch.ones(B, T, dtype=torch.bool))


def test_lora_trains_adapters_and_new_parts_and_merges_into_a_plain_dyadgen():
    cfg = load_config(overrides=["backbone.hidden_size=32", "backbone.num_hidden_layers=2",
                                 "backbone.intermediate_size=64", "decoder.hidden_size=32",
                                 "decoder.depth=1"])
    model = _model(cfg)
    adapted = add_lora(model, rank=4, alpha=8, targets=("q_proj", "v_proj"))
    assert adapted == 2 * cfg.backbone.num_hidden_layers and has_lora(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in n for n in trainable if n.startswith("backbone.lm."))
    assert "backbone.queries" in trainable and any(n.startswith("decoder.") for n in trainable)
    groups = {g["name"] for g in param_groups(model, lr=1e-3, backbone_lr=1e-4, weight_decay=0.0)}
    assert "backbone" in groups  # the adapters learn at the backbone's rate

    with torch.no_grad():  # LoRA's B starts at zero; make the adapters matter
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    plain = _model(cfg)
    plain.load_state_dict(merged_state_dict(model))
    b = _batch()
    args = (b.tokens[0], b.latents[0], b.refs[0])
    adapted_out = model.eval().teacher_forced_conditions(*args)  # [P,S,M,D], the backbone's conditions
    assert torch.allclose(plain.eval().teacher_forced_conditions(*args), adapted_out, atol=1e-5)
    assert not torch.allclose(_model(cfg).eval().teacher_forced_conditions(*args), adapted_out, atol=1e-3)
