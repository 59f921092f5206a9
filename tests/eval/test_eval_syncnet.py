"""syncnet.py: the network's layout and weight loading, the MFCCs against python_speech_features, and
lse's windows, offset search and sign convention. Random weights only: the released file is not here."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file

from dyadgen.eval.networks import syncnet
from dyadgen.eval.networks.syncnet import SyncNet, load_syncnet, lse, mfcc

HERE = Path(__file__).parents[1] / "fixtures"


@pytest.fixture(scope="module")
def net() -> SyncNet:
    torch.manual_seed(0)
    return SyncNet().eval()


def test_embedding_shapes(net: SyncNet) -> None:
    with torch.inference_mode():
        assert net.audio_embedding(torch.randn(3, 1, 13, 20)).shape == (3, 1024)
        assert net.lip_embedding(255 * torch.rand(1, 3, 5, 224, 224)).shape == (1, 1024)


# Names and shapes of syncnet_v2.model, verified against joonson/syncnet_python SyncNetModel.py at 6efbb1c
# (layer positions in each nn.Sequential and their sizes; the 512-channel version of commit 5befaa3 that
# switched the download to syncnet_v2.model). The released file was not at hand; the absence of the 14
# num_batches_tracked keys comes from a public loader that checks that file's key set.
RELEASED = {
    "netcnnaud.0.weight": (64, 1, 3, 3),
    "netcnnaud.1.running_var": (64,),
    "netcnnaud.4.weight": (192, 64, 3, 3),
    "netcnnaud.18.weight": (512, 256, 5, 4),
    "netcnnaud.19.bias": (512,),
    "netfcaud.0.weight": (512, 512),
    "netfcaud.1.running_mean": (512,),
    "netfcaud.3.weight": (1024, 512),
    "netcnnlip.0.weight": (96, 3, 5, 7, 7),
    "netcnnlip.4.weight": (256, 96, 1, 5, 5),
    "netcnnlip.18.weight": (512, 256, 1, 6, 6),
    "netfclip.3.bias": (1024,),
}


def test_keys_match_released_model(net: SyncNet) -> None:
    state = net.state_dict()
    for name, shape in RELEASED.items():
        assert tuple(state[name].shape) == shape, name
    assert not any(k.endswith("num_batches_tracked") for k in state)
    # 12 convolutions and 2 linear pairs (weight, bias), 14 BatchNorms (weight, bias, running mean and var)
    assert len(state) == 2 * 12 + 2 * 4 + 4 * 14
    assert {k.split(".")[0] for k in state} == {"netcnnaud", "netfcaud", "netcnnlip", "netfclip"}
    assert len(SyncNet(counters=True).state_dict()) == len(state) + 14


def _perturbed(net: SyncNet) -> dict[str, torch.Tensor]:
    """The net's state with BatchNorm statistics moved off their defaults, so a load that drops them shows."""
    state = {k: v.clone() for k, v in net.state_dict().items()}
    for k, v in state.items():
        if k.endswith("running_var"):
            v.uniform_(0.5, 2.0)
        elif k.endswith("running_mean"):
            v.normal_()
    return state


def test_state_dict_round_trips(net: SyncNet, tmp_path: Path) -> None:
    state = _perturbed(net)
    save_file(state, str(tmp_path / "syncnet.safetensors"))
    torch.save(state, tmp_path / "syncnet.model")  # a plain dict of tensors, as syncnet_v2.model
    for name in ("syncnet.safetensors", "syncnet.model"):
        loaded = load_syncnet(tmp_path / name)
        assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
        got = loaded.state_dict()
        assert got.keys() == state.keys()
        assert all(torch.equal(got[k], state[k]) for k in state)


def test_file_with_counters_loads(tmp_path: Path) -> None:
    state = SyncNet(counters=True).state_dict()  # what a stock nn.BatchNorm copy of S would save
    save_file(state, str(tmp_path / "counted.safetensors"))
    loaded = load_syncnet(tmp_path / "counted.safetensors")
    assert loaded.state_dict().keys() == state.keys()


def test_mfcc_equals_python_speech_features() -> None:
    ref_path = HERE / "mfcc_reference.npz"  # written by make_mfcc_reference.py with the real package
    if not ref_path.exists():
        pytest.skip("no mfcc_reference.npz")
    ref = np.load(ref_path)
    np.testing.assert_allclose(mfcc(ref["pcm"]), ref["mfcc"], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(mfcc(ref["pcm"].astype(np.float32) / 32768), ref["mfcc"], rtol=1e-10, atol=1e-10)
    for n in (1, 399, 400, 401, 560, 561, 16_000):
        np.testing.assert_allclose(mfcc(ref["pcm"][:n]), ref[f"mfcc_{n}"], rtol=1e-10, atol=1e-10)


def test_mfcc_frames_and_energy() -> None:
    for n in (400, 16_000, 32_000, 19_200 + 17):
        assert mfcc(np.zeros(n, np.float32)).shape == (1 + math.ceil((n - 400) / 160), 13)
    assert mfcc(np.zeros(32_000, np.float32)).shape[0] == 199  # 100 a second, less the last 15 ms
    t = np.arange(16_000) / 16_000
    tone = mfcc((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    silence = mfcc(np.zeros(16_000, np.float32))
    assert np.all(tone[:, 0] > silence[:, 0] + 10)  # c0 is the log energy
    assert np.all(np.isfinite(silence))


def test_offset_distances_match_calc_pdist() -> None:
    """The vectorised distances equal syncnet_python's loop over windows."""
    torch.manual_seed(1)
    lip, aud, vshift = torch.randn(7, 16), torch.randn(7, 16), 3
    padded = torch.nn.functional.pad(aud, (0, 0, vshift, vshift))
    loop = torch.stack([torch.nn.functional.pairwise_distance(lip[[i]].repeat(2 * vshift + 1, 1),
                                                              padded[i:i + 2 * vshift + 1]) for i in range(7)])
    assert torch.allclose(syncnet._offset_distances(lip, aud, vshift), loop, rtol=1e-6, atol=1e-6)


def test_lse_on_random_net(net: SyncNet) -> None:
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (30, 48, 48, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(8_000)).astype(np.float32)  # 0.5 s: the audio's 12 frames give 7 windows
    d, c, offset = lse(faces, audio, net, vshift=15, batch=3)  # batches of 3, 3 and 1
    assert math.isfinite(d) and math.isfinite(c) and d > 0 and c >= 0
    assert abs(offset) <= 15
    with pytest.raises(ValueError):
        lse(faces[:5], audio, net)  # 5 frames give no window


class _Bits(nn.Module):
    """A stand-in for SyncNet whose embeddings are readable: a lip window is its 5 frames' bright/dark bits,
    an audio window the loud/silent bits of the 5 frames it starts with (MFCC step 4 k + 1 lies inside
    frame k; c0 is log energy, about -36 for digital silence)."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def lip_embedding(self, frames: torch.Tensor) -> torch.Tensor:
        return (frames.mean((1, 3, 4)) > 128).float()  # [N,3,5,224,224] -> [N,5]

    def audio_embedding(self, cep: torch.Tensor) -> torch.Tensor:
        return (cep[:, 0, 0, 1::4] > 0).float()  # [N,1,13,20] -> c0 at steps 1,5,..,17 -> [N,5]


@pytest.mark.parametrize("delay", [-3, 0, 2])
def test_offset_sign(delay: int) -> None:
    """Sound that comes ``delay`` frames after the lips gives offset -delay (syncnet_python's convention)."""
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2, 60).astype(bool)
    faces = np.where(bits[:, None, None, None], 230, 20).astype(np.uint8) * np.ones((1, 8, 8, 3), np.uint8)
    heard = np.zeros(60, bool)  # heard[t]: frame t of the audio carries the lips of frame t - delay
    src = np.arange(60) - delay
    ok = (src >= 0) & (src < 60)
    heard[ok] = bits[src[ok]]
    audio = np.where(np.repeat(heard, 640), 0.3 * rng.standard_normal(60 * 640), 0.0).astype(np.float32)
    d, c, offset = lse(faces, audio, _Bits(), vshift=5)  # type: ignore[arg-type]
    assert offset == -delay
    assert c > 0.5 and d < 0.6
