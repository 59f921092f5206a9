"""`dyadgen evaluate --eval-config FILE`: the defaults, then the file, then the command line; older key names
load, unknown ones are a one-line error that names the key."""

import pytest

from dyadgen.config import ConfigError
from dyadgen.eval.settings import load_eval_config


def test_file_then_command_line_and_older_names(tmp_path):
    path = tmp_path / "eval.yaml"
    path.write_text("steps: 2\nseconds: 4\nguidance: 1.5\n")  # `steps` is the older name of euler_steps
    cfg = load_eval_config(str(path), {"seconds": 6.0, "guidance": None})
    assert (cfg.euler_steps, cfg.seconds, cfg.guidance) == (2, 6.0, 1.5)  # None: not given on the command line
    path.write_text("stepz: 2\n")
    with pytest.raises(ConfigError, match="eval.stepz: unknown config key"):
        load_eval_config(str(path), {})
