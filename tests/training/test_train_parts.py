"""The training loop's parts on a small real torch module: EMA math, the lr schedule, parameter
groups, step folders (atomic, last K, latest), the non-finite guard, metrics.jsonl on resume."""

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from dyadgen.errors import UserError
from dyadgen.training.checkpoints import CheckpointManager, step_name
from dyadgen.training.ema import EMA
from dyadgen.training.loop import NonFiniteError, NonFiniteGuard
from dyadgen.training.metrics import MetricsLog, read_metrics
from dyadgen.training.optim import build_optimizer, lr_factor, param_groups, set_lr
from dyadgen.training.state import TrainState, step_seed


class TwoPart(nn.Module):
    """A backbone and a new head, named the way DyadGen names them."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.lm = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8))  # "pretrained"
        self.backbone.queries = nn.Parameter(torch.zeros(2, 8))  # new, though inside the backbone
        self.head = nn.Linear(8, 2)


def test_ema_follows_the_closed_form():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    start = model.weight.detach().clone()
    values = []
    for i in range(100):
        with torch.no_grad():
            model.weight.fill_(float(i))
        values.append(float(i))
        ema.update(model)
    # Recompute the average by hand with the warmed-up decay schedule.
    expected = start.clone()
    for n, v in enumerate(values):
        d = min(0.9, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * v
    assert torch.allclose(ema.shadow["weight"], expected, atol=1e-5)
    assert ema.current_decay() == 0.9  # warmup over: the configured decay


def test_ema_swap_restores_the_training_weights():
    model = nn.Linear(3, 2)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    trained = model.weight.detach().clone()
    with ema.swapped_in(model):
        assert not torch.equal(model.weight, trained)
    assert torch.equal(model.weight, trained)


def test_ema_skips_frozen_parameters():
    model = TwoPart()
    model.backbone.requires_grad_(False)
    assert set(EMA(model, 0.9).shadow) == {"head.weight", "head.bias"}


def test_lr_warms_up_then_follows_the_cosine_to_the_floor():
    f = [lr_factor(s, warmup_steps=10, max_steps=110, min_lr_ratio=0.1) for s in range(130)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(f[:9], f[1:10], strict=True))
    assert f[10] == pytest.approx(1.0) and f[60] == pytest.approx(0.55) and f[110] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(f[10:110], f[11:111], strict=True))
    assert f[129] == pytest.approx(0.1)  # past max_steps: stays at the floor


def test_backbone_and_new_parts_get_their_own_lr_and_norms_no_decay():
    model = TwoPart()
    groups = {g["name"]: g for g in param_groups(model, lr=1e-3, backbone_lr=1e-4, weight_decay=0.1)}
    assert set(groups) == {"backbone", "backbone_no_decay", "new", "new_no_decay"}
    assert groups["backbone"]["lr"] == 1e-4 and groups["new"]["lr"] == 1e-3
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0 and groups["new"]["weight_decay"] == 0.1
    assert len(groups["backbone_no_decay"]["params"]) == 3  # linear bias + LayerNorm weight and bias
    assert len(groups["new"]["params"]) == 2  # the head's weight and the queries
    opt = build_optimizer(model, lr=1e-3, backbone_lr=1e-4, weight_decay=0.1)
    lrs = set_lr(opt, 0.5)
    assert lrs["new"] == pytest.approx(5e-4) and lrs["backbone"] == pytest.approx(5e-5)


def _save(manager: CheckpointManager, step: int, payload: str) -> Path:
    def write(folder: Path) -> None:
        (folder / "payload.txt").write_text(payload)

    return manager.save(step, write, is_main=True, barrier=lambda: None)


def test_checkpoints_keep_the_last_k_and_latest_names_the_newest(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step in (5, 10, 15):
        _save(manager, step, str(step))
    assert [s for s, _ in manager.steps()] == [10, 15]
    assert manager.latest() == tmp_path / "checkpoints" / step_name(15)
    assert manager.resolve("latest") == manager.latest()
    assert manager.resolve(str(tmp_path)) == manager.latest()  # a run folder means its newest checkpoint
    assert manager.resolve("") is None
    with pytest.raises(UserError, match="not a step folder"):
        manager.resolve(str(tmp_path / "nowhere"))


def test_an_interrupted_save_leaves_the_previous_checkpoint_intact(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=1)
    _save(manager, 5, "five")

    def dies(folder: Path) -> None:
        (folder / "payload.txt").write_text("half")
        raise KeyboardInterrupt  # killed in the middle of writing

    with pytest.raises(KeyboardInterrupt):
        manager.save(10, dies, is_main=True, barrier=lambda: None)
    latest = manager.latest()
    assert latest.name == step_name(5) and (latest / "payload.txt").read_text() == "five"
    _save(manager, 10, "ten")  # the next save cleans the half-written folder
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir()] == [step_name(10)]


def test_start_up_removes_killed_saves_and_puts_back_a_checkpoint_moved_aside(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=3)
    _save(manager, 5, "five")
    root = tmp_path / "checkpoints"
    (root / ".tmp-step_0000010").mkdir()  # killed while writing step 10
    (root / step_name(5)).rename(root / f".tmp-old-{step_name(5)}")  # killed while re-saving step 5
    assert manager.latest() is None
    manager.clean_stale()
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [step_name(5)]
    assert (manager.latest() / "payload.txt").read_text() == "five"


def test_saving_the_same_step_twice_replaces_it(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=3)
    _save(manager, 5, "first")
    _save(manager, 5, "second")
    assert (manager.latest() / "payload.txt").read_text() == "second"


def test_guard_skips_counts_and_stops_after_max_in_row():
    state, guard = TrainState(), NonFiniteGuard(max_in_row=3)
    assert guard.update(state, finite=False, step=1) and guard.update(state, finite=False, step=1)
    assert not guard.update(state, finite=True, step=1)  # a good step resets the run of bad ones
    assert state.nonfinite_total == 2 and state.nonfinite_in_row == 0
    guard.update(state, finite=False, step=2)
    guard.update(state, finite=False, step=2)
    with pytest.raises(NonFiniteError, match="3 steps in a row had a non-finite loss"):
        guard.update(state, finite=False, step=2)


def test_metrics_log_is_cut_back_to_the_resumed_step(tmp_path):
    log = MetricsLog(tmp_path, enabled=True)
    log.open(resume_step=None)
    for step in range(1, 6):
        log.write({"step": step, "loss": 1.0 / step})
    log.close()
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 6, "lo')  # a line torn by a kill
    log.open(resume_step=3)
    log.write({"step": 4, "loss": math.nan})
    log.close()
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3, 4] and records[-1]["loss"] == "nan"


def test_step_seeds_depend_on_every_coordinate_and_nothing_else():
    assert step_seed(0, 3, 1) == step_seed(0, 3, 1)
    assert len({step_seed(0, 3, 1), step_seed(1, 3, 1), step_seed(0, 4, 1), step_seed(0, 3, 0)}) == 4
    assert 0 <= step_seed(7, 10**6, 63) < 2**63
