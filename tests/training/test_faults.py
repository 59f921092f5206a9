"""Faults in long jobs, injected into real files and real processes: a truncated shard, bytes
overwritten in a sample's header and in its tensor data, a missing shard, a full disk under the
checkpoint writer, SIGKILL at several points of a save (SIGTERM mid-step on 2 DDP processes is in
test_train_run.py, with the DDP run it interrupts). Each test asserts what a user sees: the run goes
on or stops with a one-line error, the counts are right, and a resumed run has the losses of an
uninterrupted one."""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from trainrun import REPO, losses, run_train, train_args, train_env

from dyadgen.cli import main

TOLERANT = ["data.max_bad_fraction=0.9"]  # most samples of the damaged copy are bad: keep training


def _members(shard: Path) -> dict[str, tuple[int, int]]:
    """member name -> (data offset, size) in the tar file."""
    with tarfile.open(shard) as tar:
        return {m.name: (m.offset_data, m.size) for m in tar.getmembers()}


@pytest.fixture(scope="module")
def damaged(train_data, tmp_path_factory) -> tuple[dict[str, Path], dict[str, int]]:
    """A copy of the training shards with four faults; the members they break, and how many
    training windows read one of them."""
    from dyadgen.cache.windows import windows_needing

    root = tmp_path_factory.mktemp("damaged")
    shutil.copytree(train_data["shards"], root / "shards")
    shards = root / "shards"
    entries = json.loads((shards / "manifest.json").read_text())["splits"]["train"]
    bad: list[set[str]] = []
    # an interrupted copy: the first shard cut to half its size
    truncated = shards / entries[0]["path"]
    members, cut = _members(truncated), truncated.stat().st_size // 2
    truncated.write_bytes(truncated.read_bytes()[:cut])
    bad.append({k for k in entries[0]["keys"] if any(members[f"{k}.{ext}"][0] + members[f"{k}.{ext}"][1] > cut
                                                     for ext in ("safetensors", "json") if f"{k}.{ext}" in members)})
    # bit rot in the second shard: 64 bytes inside one latent block's JSON header, 16 inside another's tensor data
    rotten = shards / entries[1]["path"]
    members, data = _members(rotten), bytearray(rotten.read_bytes())
    header_key, tensor_key = entries[1]["keys"][1], entries[1]["keys"][2]
    at = members[f"{header_key}.safetensors"][0]
    data[at + 12: at + 76] = b"\xff" * 64
    at = members[f"{tensor_key}.safetensors"][0]
    at += 8 + int.from_bytes(data[at: at + 8], "little") + 40  # past the 8-byte length and the header
    data[at: at + 16] = bytes(b ^ 0xFF for b in data[at: at + 16])
    rotten.write_bytes(bytes(data))
    bad.append({header_key, tensor_key})
    # a shard that never arrived
    (shards / entries[2]["path"]).unlink()
    bad.append(set(entries[2]["keys"]))
    lost = sum(windows_needing(entry, keys) for entry, keys in zip(entries, bad, strict=False))
    return {"shards": shards, "tokenizer": train_data["tokenizer"]}, {"members": set().union(*bad), "windows": lost}


def test_verify_shards_names_every_bad_shard_and_member(train_data, damaged, capsys):
    data, bad = damaged
    assert main(["verify-shards", str(train_data["shards"])]) == 0
    assert "0 bad shards" in capsys.readouterr().out
    assert main(["verify-shards", str(data["shards"]), "--json", str(data["shards"].parent / "report.json")]) == 1
    out = capsys.readouterr().out
    assert f"3 bad shards, {len(bad['members'])} bad members, {bad['windows']} training windows lost" in out
    assert "bytes, the manifest says" in out and "missing (4 windows)" in out
    assert "checksum mismatch" in out  # the tensor-data flip: only the recorded checksum sees it
    assert all(f"sample {key}:" in out for key in bad["members"])
    report = json.loads((data["shards"].parent / "report.json").read_text())
    assert sum(len(r["bad_samples"]) for r in report["bad"]) == len(bad["members"])


SAVES = ["train.max_steps=6", "train.save_every=2", *TOLERANT]  # 6 steps of 2 = one epoch: every sample met


@pytest.fixture(scope="module")
def uninterrupted(damaged, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A run on the damaged shards that nothing interrupts: what the killed runs must reproduce."""
    out = tmp_path_factory.mktemp("whole") / "run"
    done = run_train(train_args(out, damaged[0], *SAVES))
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done


def test_training_skips_counts_and_names_bad_samples_or_stops_past_the_limit(damaged, uninterrupted, tmp_path):
    data, bad = damaged
    out, done = uninterrupted
    assert "missing (4 windows)" in done.stdout and "bytes, the manifest says" in done.stdout  # checked at start
    logged = [line for line in done.stdout.splitlines() if "skipped a bad sample in training" in line]
    keys = {line.split("sample ")[-1].split(":")[0] for line in logged}
    assert keys <= bad["members"] and len(logged) == bad["windows"]  # each window once, with its shard and member
    assert sorted(losses(out)) == [1, 2, 3, 4, 5, 6]  # full batches throughout
    state = json.loads((out / "checkpoints" / "step_0000006" / "train_state.json").read_text())
    assert len(state["data_states"][0]["bad"]) == bad["windows"]  # known-bad windows travel with the checkpoint

    stopped = run_train(train_args(tmp_path / "stops", data, "train.max_steps=6"))  # the default limit: 1 %
    assert stopped.returncode == 2
    errors = [line for line in stopped.stderr.splitlines() if line.strip()]
    assert errors[-1].startswith("train.py: error: stopping at step 1: ") and "verify-shards" in errors[-1]
    assert "Traceback" not in stopped.stderr


@pytest.mark.slow  # fault injection: three killed training processes and their resumes
@pytest.mark.parametrize("point", ["save:state-written:4", "save:written:4", "save:renamed:4"])
def test_sigkill_during_a_save_resumes_from_the_last_complete_checkpoint(damaged, uninterrupted, tmp_path, point):
    data, steps = damaged[0], SAVES
    whole = losses(uninterrupted[0])
    out = tmp_path / "cut"
    env = {**train_env(), "DYADGEN_FAILPOINT": point}
    killed = subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), *train_args(out, data, *steps)],
                            cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert killed.returncode == -signal.SIGKILL
    ckpts = out / "checkpoints"
    complete = sorted(p.name for p in ckpts.glob("step_*"))
    assert complete == (["step_0000002", "step_0000004"] if point.startswith("save:renamed") else ["step_0000002"])
    assert (ckpts / "latest").read_text().strip() == "step_0000002"  # the pointer was never updated

    resumed = run_train(train_args(out, data, *steps, "train.resume=latest"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected_from = "step_0000004" if point.startswith("save:renamed") else "step_0000002"
    assert f"resuming from {ckpts / expected_from}" in resumed.stdout
    assert not list(ckpts.glob(".tmp-*"))  # what the killed save left was removed at start
    got = losses(out)
    assert sorted(got) == [1, 2, 3, 4, 5, 6]
    assert [got[s]["loss"] for s in range(1, 7)] == [whole[s]["loss"] for s in range(1, 7)]  # bit for bit


def _limit_file_size(limit: int):
    def apply() -> None:  # in the child: writes past the limit fail with EFBIG instead of killing it
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.fixture(scope="module")
def two_steps(train_data, tmp_path_factory) -> Path:
    """A run folder with one complete checkpoint, at step 2."""
    out = tmp_path_factory.mktemp("two_steps") / "run"
    done = run_train(train_args(out, train_data, "train.max_steps=2", "train.save_every=2"))
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_a_full_disk_is_a_one_line_error_and_earlier_checkpoints_stay(train_data, two_steps, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(two_steps, out)
    saved = out / "checkpoints" / "step_0000002"
    before = {p.relative_to(saved): p.stat().st_size for p in saved.rglob("*") if p.is_file()}
    args = train_args(out, train_data, "train.max_steps=4", "train.save_every=2", "train.resume=latest")
    full = subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env=train_env(), preexec_fn=_limit_file_size(2 << 20))
    assert full.returncode == 2, full.stderr[-3000:]
    error = [line for line in full.stderr.splitlines() if line.strip()][-1]
    assert error.startswith(f"train.py: error: {out / 'checkpoints' / 'step_0000004'}: not written (")
    assert "File too large" in error and "Traceback" not in full.stderr
    assert not list((out / "checkpoints").glob(".tmp-*"))  # the temporary folder is gone
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*")) == ["step_0000002"]
    assert {p.relative_to(saved): p.stat().st_size for p in saved.rglob("*") if p.is_file()} == before
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_0000002"


def test_no_room_for_a_checkpoint_retries_at_the_next_save_when_configured(train_data, two_steps, tmp_path):
    """On a real filesystem of limited size (tmpfs, where this machine lets us mount one)."""
    size = sum(p.stat().st_size for p in (two_steps / "checkpoints").rglob("*") if p.is_file())
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(size * 1.6) + (1 << 20)}", "tmpfs",
                              str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a size-limited tmpfs here (needs root); the file-size-limit test covers writes")
    try:
        out = disk / "run"
        run = run_train(train_args(out, train_data, "train.max_steps=6", "train.save_every=2", "train.keep_last=3",
                                   "train.on_save_error=retry"))
        assert run.returncode == 2  # the last save has nothing left to retry: a one-line error
        assert "MB free, a checkpoint needs about" in run.stdout and "the next save tries again" in run.stdout
        assert sorted(losses(out)) == [1, 2, 3, 4, 5, 6]  # training went on past the failed save
        error = [line for line in run.stderr.splitlines() if line.strip()][-1]
        assert error.startswith("train.py: error: ") and "MB free" in error
        assert sorted(p.name for p in (out / "checkpoints").glob("step_*")) == ["step_0000002"]
        assert not list((out / "checkpoints").glob(".tmp-*"))
    finally:
        subprocess.run(["umount", str(disk)], check=False)
