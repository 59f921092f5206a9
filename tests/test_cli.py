"""The `dyadgen` command: help for every subcommand, one-line errors."""

import subprocess
import sys

import pytest

from dyadgen.cli import COMMANDS, main


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_subcommand_prints_its_own_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert f"dyadgen {name}" in capsys.readouterr().out


def test_console_script_runs_and_errors_are_one_line():
    ok = subprocess.run(["dyadgen", "config", "train.max_steps=3"], capture_output=True, text=True)
    assert ok.returncode == 0 and "max_steps: 3" in ok.stdout
    bad = subprocess.run(["dyadgen", "config", "train.nope=3"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "dyadgen config: error: train.nope: unknown config key"


def test_import_is_fast_and_builds_nothing():
    code = (
        "import sys, time; t = time.perf_counter(); import dyadgen, dyadgen.cli, dyadgen.config; "
        "dt = time.perf_counter() - t; "
        "print(dt, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    # not a timing test: what keeps import fast is that no torch (and so no model) is imported
    assert out[1] == "False"
