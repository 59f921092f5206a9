"""`dyadgen bench --params/--flops`: parameter counts of the real configuration and the FLOPs of generating a
second of video, counted on the meta device and checked against the architecture's arithmetic."""

import json

import pytest

from dyadgen.bench.flops import decoder_flops_per_second
from dyadgen.cli import main
from dyadgen.config import load_config


def test_bench_counts_the_real_configuration(tmp_path, capsys):
    assert main(["bench", "--params", "--json", str(tmp_path / "p.json")]) == 0
    params = json.loads((tmp_path / "p.json").read_text())["params"]
    assert abs(params["vae"] / 83.8e6 - 1) < 0.005  # the FLUX.1 VAE
    assert abs(params["backbone"] / 3.09e9 - 1) < 0.005  # Qwen2.5-3B
    assert params["decoder"] > 0 and "backbone" in capsys.readouterr().out


def test_bench_counts_the_decoder_flops_per_second_of_video(tmp_path):
    assert main(["bench", "--flops", "--json", str(tmp_path / "f.json")]) == 0
    flops = json.loads((tmp_path / "f.json").read_text())["decoder_flops"]
    cfg = load_config(preset_name="real")
    d, L = cfg.decoder, flops["tokens_per_sequence"]
    assert L == cfg.model.motion_tokens + (2 + cfg.model.chunk_frames) * (448 // 16) * (512 // 16)
    # the blocks' matrix products (qkv + out + MLP) and attention, both people and both guidance branches
    blocks = d.depth * (2 * L * (4 * d.hidden_size**2 + 2 * d.hidden_size * int(d.mlp_ratio * d.hidden_size))
                        + 4 * L * L * d.hidden_size)
    assert 1.0 < flops["per_euler_step"] / (4 * blocks) < 1.05  # plus embeddings, adaLN and the output layer
    assert flops["per_second"] == flops["per_euler_step"] * cfg.infer.euler_steps * 25 / cfg.model.chunk_frames
    cfg.infer.guidance = 1.0  # no unconditional branch: half the work
    assert decoder_flops_per_second(cfg)["per_second"] == flops["per_second"] / 2
    parts = json.loads((tmp_path / "f.json").read_text())["flops"]
    # the FLUX VAE decodes a 512x448 frame in 2.2 TFLOP, TAEF1 in 0.12; 50 frames per second of video
    assert abs(parts["per_second"]["vae_decode"] / 50 / 2.197e12 - 1) < 0.01
    assert abs(parts["per_second"]["taef1_decode"] / 50 / 0.1237e12 - 1) < 0.01
    total = sum(v for k, v in parts["per_second"].items() if k != "taef1_decode")
    assert parts["real_time"]["x"] == pytest.approx(989e12 * 0.4 / total)
