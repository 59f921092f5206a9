"""What the real presets train with, checked on the tiny preset: fp32 master weights even from a
backbone folder saved in bf16, a bf16-autocast step close to fp32's, every trainable parameter in
every step's gradient (so DDP needs no unused-parameter search), a frozen text table, and the
attention kernels and launchers the trainer refuses."""

from __future__ import annotations

import pytest
import torch

from dyadgen.config import ConfigError, load_config
from dyadgen.models import DyadBatch, DyadGen
from dyadgen.training.optim import build_optimizer

LATENT = (8, 8, 6)


def batch(B: int = 2, T: int = 16, seed: int = 0) -> DyadBatch:
    g = torch.Generator().manual_seed(seed)
    return DyadBatch(tokens=torch.randint(0, 16, (B, 2, T), generator=g),
                     latents=torch.randn(B, 2, T, *LATENT, generator=g),
                     refs=torch.randn(B, 2, *LATENT, generator=g), mask=torch.ones(B, T, dtype=torch.bool),
                     speaking=torch.rand(B, 2, T, generator=g) > 0.5, text=["你好", "hello"][:B],
                     tokens_before=torch.randint(0, 16, (B, 2, 24), generator=g),
                     tokens_after=torch.randint(0, 16, (B, 2, 2), generator=g))


def model_for(*overrides: str, **kwargs) -> DyadGen:
    cfg = load_config(preset_name="tiny", overrides=list(overrides))
    torch.manual_seed(0)
    model = DyadGen.from_config(cfg, num_audio_codes=16, latent_shape=LATENT, **kwargs)
    with torch.no_grad():  # adaLN-zero: an untrained decoder passes no gradient back; wake it as training would
        for p in model.decoder.parameters():
            if not p.any():
                p.normal_(0, 0.05)
    return model


def test_a_backbone_saved_in_bf16_loads_with_fp32_weights_that_one_adamw_step_moves(tmp_path):
    from dyadgen.models.backbone import build_language_model

    cfg = load_config(preset_name="tiny")
    build_language_model(cfg.backbone, pretrained=False).to(torch.bfloat16).save_pretrained(tmp_path / "qwen")
    model = model_for(f"backbone.name_or_path={tmp_path / 'qwen'}", pretrained_backbone=True)
    lm = model.backbone.lm
    assert {p.dtype for p in lm.parameters()} == {torch.float32}
    before = {n: p.detach().clone() for n, p in lm.named_parameters()}
    optimizer = build_optimizer(model, lr=1e-4, backbone_lr=1e-5, weight_decay=0.0)
    model.train()
    model(batch(), generator=torch.Generator().manual_seed(0))["loss"].backward()
    optimizer.step()
    moved = [n for n, p in lm.named_parameters() if not torch.equal(p, before[n])]
    assert len(moved) == len(before)  # every backbone tensor took its small update
    # the same update in bf16 storage would be lost: most elements round back to their old value
    weight = "layers.0.mlp.down_proj.weight"
    new = dict(lm.named_parameters())[weight].detach()
    kept = (new.bfloat16() == before[weight].bfloat16()).float().mean()
    assert kept > 0.5


def test_a_bf16_autocast_step_on_the_cpu_is_finite_and_within_2_percent_of_fp32():
    model = model_for().train()
    losses, grads = {}, {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        model.zero_grad()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model(batch(), generator=torch.Generator().manual_seed(1))["loss"]
        loss.backward()
        losses[name] = float(loss)
        grads[name] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert torch.isfinite(grads["bf16"]).all()
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.02)
    cos = torch.nn.functional.cosine_similarity(grads["bf16"], grads["fp32"], dim=0)
    assert cos > 0.98


@pytest.mark.parametrize("dropout", [0.0, 1.0])
def test_every_trainable_parameter_gets_a_gradient_in_every_step(dropout):
    """With no condition dropped and with every condition dropped (audio null, no emotion, empty
    prompt), and the decoder on a subset of the steps: nothing trainable goes unused, so DDP runs
    with find_unused_parameters=False."""
    model = model_for(f"model.audio_dropout={dropout}", f"model.emotion_dropout={dropout}",
                      f"model.text_dropout={dropout}", "model.decoder_steps_per_sample=1").train()
    model(batch(), generator=torch.Generator().manual_seed(2))["loss"].backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []


def test_decoder_partner_dropout_hides_the_partner_from_the_decoder_alone(monkeypatch):
    """model.decoder_partner_dropout: in a dropped sample the decoder's frame window holds the null code where
    the partner's audio was, while its own audio and the backbone's audio of both people stay; generation
    (eval mode) always sees the partner."""
    model = model_for("model.decoder_partner_dropout=1.0", "model.audio_dropout=0.0").train()
    seen = {}
    real_decoder, real_steps = model.decoder.forward, model.backbone.step_tokens

    def decoder(x, cond, **kw):
        seen["decoder"] = cond.audio.clone()  # [N,C,A]
        return real_decoder(x, cond, **kw)

    def steps(motion, audio, emotion):
        seen["backbone"] = audio.clone()  # [B,P,S,C]
        return real_steps(motion, audio, emotion)

    monkeypatch.setattr(model.decoder, "forward", decoder)
    monkeypatch.setattr(model.backbone, "step_tokens", steps)
    b = batch()
    model(b, generator=torch.Generator().manual_seed(5))
    own = 2 * model.decoder_cfg.audio_context + 1
    assert (seen["decoder"][..., own:] == model.null_id).all()
    assert not (seen["decoder"][..., :own] == model.null_id).any()
    assert not (seen["backbone"] == model.null_id).any()
    model.eval()
    with torch.no_grad():
        model(b, generator=torch.Generator().manual_seed(5))
    assert not (seen["decoder"] == model.null_id).any()


def test_the_text_table_can_stay_frozen_and_out_of_the_optimizer():
    model = model_for("backbone.freeze_text_embeddings=true").train()
    table = model.backbone.lm.get_input_embeddings().weight
    model(batch(), generator=torch.Generator().manual_seed(3))["loss"].backward()
    assert not table.requires_grad and table.grad is None
    optimizer = build_optimizer(model, lr=1e-4, backbone_lr=1e-5, weight_decay=0.0)
    assert all(p is not table for group in optimizer.param_groups for p in group["params"])
    for name in ("real", "real-0.5b"):
        real = load_config(preset_name=name)
        assert real.backbone.freeze_text_embeddings and real.backbone.gradient_checkpointing
        assert real.decoder.gradient_checkpointing and 2 <= real.model.decoder_steps_per_sample <= 4
        assert real.model.history_steps < real.data.window_steps


def test_checkpointed_blocks_give_the_same_loss_and_gradients():
    plain = model_for().train()
    ckpt = model_for("backbone.gradient_checkpointing=true", "decoder.gradient_checkpointing=true").train()
    ckpt.load_state_dict(plain.state_dict())
    out = []
    for model in (plain, ckpt):
        loss = model(batch(), generator=torch.Generator().manual_seed(4))["loss"]
        loss.backward()
        out.append((float(loss), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])))
    assert out[0][0] == pytest.approx(out[1][0], rel=1e-6)
    torch.testing.assert_close(out[0][1], out[1][1], rtol=1e-4, atol=1e-6)


def test_attention_kernels_that_ignore_the_window_mask_and_deepspeed_are_refused(monkeypatch):
    for impl in ("eager", "flex_attention", "flash_attention_2"):
        with pytest.raises(ConfigError, match="backbone.attn_implementation"):
            load_config(preset_name="tiny", overrides=[f"backbone.attn_implementation={impl}"])
    from dyadgen.errors import UserError
    from dyadgen.training.distributed import make_accelerator

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(UserError, match="DeepSpeed is not supported"):
        make_accelerator(load_config(preset_name="tiny"))
