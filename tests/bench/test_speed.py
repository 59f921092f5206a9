"""`dyadgen bench` with no flag: one table of speed measured in one process (the keys a user's scripts read,
every sampler setting, the parts generation's time goes to) and the real presets' projection. Nothing here
asserts a time: timings belong to the benchmark's output, not to tests."""

import json

import pytest

from dyadgen.bench.flops import flops_per_second
from dyadgen.bench.speed import PARTS, projected_setting, projection, settings
from dyadgen.cli import main
from dyadgen.config import load_config


def test_the_projection_orders_the_sampler_settings_by_their_work():
    cfg = load_config(preset_name="real")
    proj = projection(cfg, "h100", 0.4)
    rtf = proj["rtf"]
    for mode in ("guided", "distilled"):
        for vae in ("full", "taef1"):
            assert rtf[f"steps1/{mode}/{vae}"] < rtf[f"steps2/{mode}/{vae}"] < rtf[f"steps4/{mode}/{vae}"]
    for steps in (1, 2, 4):
        assert rtf[f"steps{steps}/distilled/full"] < rtf[f"steps{steps}/guided/full"]
        assert rtf[f"steps{steps}/guided/taef1"] < rtf[f"steps{steps}/guided/full"]
    # the config's own setting is what `bench --flops` projects (its x is the inverse of the RTF)
    assert projected_setting(cfg) == "steps2/guided/taef1"
    assert rtf["steps2/guided/taef1"] == pytest.approx(1 / flops_per_second(cfg)["real_time"]["x_taef1"], rel=1e-6)


def test_the_real_preset_defaults_to_at_least_twice_real_time_on_one_h100():
    """configs/real.yaml's sampler settings: projected at 40 % of an H100's dense bf16 rate, both people at
    512x448, the whole generation (backbone, decoder steps, the VAE decode) at least 2x faster than real time."""
    cfg = load_config("configs/real.yaml")
    assert (cfg.data.height, cfg.data.width) == (512, 448)
    assert projection(cfg, "h100", 0.4)["rtf"][projected_setting(cfg)] <= 0.5


def test_every_setting_a_user_can_pick_is_a_row():
    rows = {s.name for s in settings(has_fast_decoder=True, guided=True)}
    assert len(rows) == 3 * 3 * 2 and "steps4/batched/full" in rows and "steps1/separate/fast" in rows
    assert {s.name for s in settings(has_fast_decoder=False, guided=False)} == {"steps4/none/full",
                                                                                "steps2/none/full",
                                                                                "steps1/none/full"}
    # a checkpoint with a guidance-distilled student: its step counts, with either decoder
    student = {s.name for s in settings(True, True, (4, 2, 1))} - rows
    assert student == {f"steps{k}/distilled/{d}" for k in (4, 2, 1) for d in ("full", "fast")}


@pytest.mark.slow
def test_bench_with_no_flag_measures_one_table_and_writes_its_keys(tmp_path, capsys):
    out = tmp_path / "speed.json"
    assert main(["bench", "--seconds", "1", "--positions", "1,3", "--train-presets", "tiny", "--train-steps", "1",
                 "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    for key in ("matmul_flops_per_s", "rtf_default", "rtf", "time_shares", "step_cost_ratio_3s_1s",
                "train_mfu_tiny"):
        assert key in r, key
    assert r["projection"]["h100_rtf_real"] == r["projection"]["real"]["rtf"]["steps2/guided/taef1"]
    assert set(r["rtf"]) == {s.name for s in settings(True, True, (4, 2, 1))} and all(v > 0 for v in r["rtf"].values())
    shares = r["time_shares"]
    assert set(shares) == {*PARTS, "other"} and all(0 <= v <= 1 for v in shares.values())
    assert shares["decoder"] > 0 and shares["backbone"] > 0 and shares["vae_decode"] > 0
    assert sum(shares.values()) == pytest.approx(1.0, abs=0.02)
    text = capsys.readouterr().out
    assert "projected, not measured" in text and "steps4/batched/full" in text
