"""With weight files set for every metric network (random weights here, the real files' layout), every
figure that needs one is measured and scored instead of reported as unavailable."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

pytest.importorskip("dlib")
skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from dyadgen.eval.networks.arcface import IResNet
    from dyadgen.eval.networks.i3d import I3D
    from dyadgen.eval.networks.inception import FIDInception
    from dyadgen.eval.networks.lpips_alex import AlexFeatures
    from dyadgen.eval.networks.syncnet import SyncNet
    from dyadgen.eval.settings import MetricWeights

    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    paths = {}
    for key, net in (("syncnet", SyncNet()), ("inception", FIDInception()), ("i3d", I3D()),
                     ("arcface", IResNet(50)), ("alexnet", AlexFeatures())):
        paths[key] = str(folder / f"{key}.safetensors")
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, paths[key])
    return MetricWeights(**paths)


def test_every_network_metric_is_measured_when_its_weights_are_given(weights):
    from dyadgen.eval.measure import load_networks, measure_person

    nets = load_networks(weights)
    assert not nets.missing
    face = skimage_data.astronaut()[40:220, 120:320]  # uint8 [180,200,3]
    frames = np.stack([np.roll(face, t % 3, axis=0) for t in range(32)])  # [32,H,W,3], a little motion
    audio = np.random.default_rng(0).standard_normal(32 * 640).astype(np.float32) * 0.1
    speaks = np.ones(32, bool)
    d = measure_person(frames, frames[::-1].copy(), face, audio, speaks, nets)
    assert d["lpips"].shape == (32,) and np.isfinite(d["lpips"]).all()
    assert np.isfinite(d["csim"][::25]).all() and -1 <= d["csim"][0] <= 1
    assert d["inception"].shape == (7, 2048)
    assert d["i3d"].shape == (3, 400)  # 16-frame clips starting at frames 0, 8 and 16: overlapping by half
    lse_d, lse_c = d["lse"]  # the whole window as one clip, as syncnet_python scores
    assert np.isfinite(lse_d) and lse_c >= 0
    run_d, run_c = d["lse_run"]  # the one speaking run of 32 frames: the same frames here
    assert run_d == pytest.approx(lse_d) and run_c == pytest.approx(lse_c)
