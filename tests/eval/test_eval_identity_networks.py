"""Identity (ArcFace) and perceptual (LPIPS) metric networks: shapes, weight-file compatibility, face alignment,
and LPIPS against torchmetrics' own implementation. CPU only, a few seconds."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from dyadgen.errors import UserError
from dyadgen.eval.networks.arcface import (
    ARCFACE_TEMPLATE,
    IResNet,
    align_112,
    depth_from_keys,
    landmarks5_from_68,
    load_arcface,
    similarity_to_template,
)
from dyadgen.eval.networks.lpips_alex import LPIPS, AlexFeatures, load_lpips


@pytest.fixture(scope="module")
def r50() -> IResNet:
    torch.manual_seed(0)
    return IResNet(50).eval()


def test_iresnet50_embeds_a_face_as_512_numbers(r50: IResNet) -> None:
    with torch.no_grad():
        out = r50(torch.rand(1, 3, 112, 112))
    assert out.shape == (1, 512) and torch.isfinite(out).all()


def test_weights_round_trip_through_safetensors_with_the_depth_read_from_the_keys(r50: IResNet, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    with torch.no_grad():  # non-trivial BN statistics, so a skipped buffer would show in the output
        for m in r50.modules():
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "backbone.safetensors"
    save_file(r50.state_dict(), str(path))
    loaded = load_arcface(path)
    assert loaded.depth == 50 and not loaded.training
    assert all(torch.equal(v, r50.state_dict()[k]) for k, v in loaded.state_dict().items())
    x = torch.rand(1, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(loaded(x), r50(x))


def test_a_file_of_another_network_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"layer1.0.weight": torch.zeros(1), "layer1.1.weight": torch.zeros(1)}, path)
    with pytest.raises(UserError):
        load_arcface(path)


def test_parameter_names_and_shapes_are_those_of_the_released_backbones() -> None:
    """The released files (ms1mv3_arcface_r50_fp16/backbone.pth, ms1mv3_arcface_r100_fp16/backbone.pth) are
    ``backbone.module.state_dict()`` of arcface_torch's IResNet (utils/utils_callbacks.py, insightface commit
    f89ecaaa, March 2021) and are loaded strictly by its inference.py and eval_ijbc.py. Our module was compared
    with that definition (the 2021 version and the HEAD 7fadd420 version of backbones/iresnet.py): same keys in
    the same order, same shapes, bit-equal outputs with shared weights. The counts below are from that check:
    r100 has 65,156,160 parameters, i.e. a ~261 MB float32 file, the size of the released r100 backbone.pth."""
    expected_100 = {
        "conv1.weight": (64, 3, 3, 3),
        "bn1.running_var": (64,),
        "prelu.weight": (64,),
        "layer1.0.bn1.weight": (64,),
        "layer1.0.conv1.weight": (64, 64, 3, 3),
        "layer1.0.prelu.weight": (64,),
        "layer1.0.conv2.weight": (64, 64, 3, 3),
        "layer1.0.bn3.num_batches_tracked": (),
        "layer1.0.downsample.0.weight": (64, 64, 1, 1),
        "layer1.0.downsample.1.running_mean": (64,),
        "layer2.0.conv1.weight": (128, 64, 3, 3),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "layer2.12.conv2.weight": (128, 128, 3, 3),
        "layer3.29.bn3.bias": (256,),
        "layer4.2.conv2.weight": (512, 512, 3, 3),
        "bn2.weight": (512,),
        "fc.weight": (512, 512 * 7 * 7),
        "fc.bias": (512,),
        "features.weight": (512,),
        "features.running_mean": (512,),
        "features.num_batches_tracked": (),
    }
    with torch.device("meta"):  # shapes without allocating 65 M parameters
        state = IResNet(100).state_dict()
        state_50 = IResNet(50).state_dict()
    assert {k: tuple(state[k].shape) for k in expected_100} == expected_100
    assert len(state) == 925 and len(state_50) == 475
    assert "layer1.1.downsample.0.weight" not in state  # only a stage's first block projects
    assert sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k) == 65_156_160
    assert depth_from_keys(list(state)) == 100 and depth_from_keys(list(state_50)) == 50


def _smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A low-frequency RGB image, so resampling changes it little and crops can be compared pixel by pixel."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)  # [h, w] each
    channels = []
    for _ in range(3):
        fx, fy, px, py = rng.uniform(0.02, 0.08), rng.uniform(0.02, 0.08), rng.uniform(0, 6), rng.uniform(0, 6)
        channels.append(127.5 + 100 * np.sin(fx * xx + px) * np.cos(fy * yy + py))
    return np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)  # [h, w, 3]


def test_a_face_already_on_the_template_is_cropped_unchanged() -> None:
    image = _smooth_image(112, 112)
    np.testing.assert_allclose(similarity_to_template(ARCFACE_TEMPLATE), np.eye(2, 3), atol=1e-9)
    crop = align_112(image, ARCFACE_TEMPLATE)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    assert np.abs(crop.astype(int) - image.astype(int)).max() <= 1


def test_a_rotated_scaled_face_is_brought_back_to_the_template() -> None:
    import cv2

    crop = _smooth_image(112, 112, seed=1)
    angle, scale, shift = np.deg2rad(28.0), 1.7, np.array([100.0, 30.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    placed = np.concatenate([rot, shift[:, None]], 1)  # [2, 3]: crop -> canvas
    canvas = cv2.warpAffine(crop, placed, (320, 300), flags=cv2.INTER_LINEAR)  # [300, 320, 3]
    landmarks = ARCFACE_TEMPLATE @ rot.T + shift  # [5, 2] where the face's points now lie

    matrix = similarity_to_template(landmarks)
    back = landmarks @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(back, ARCFACE_TEMPLATE, atol=1e-6)
    aligned = align_112(canvas, landmarks)
    inner = (slice(8, 104), slice(8, 104))  # the border samples outside the placed crop
    error = np.abs(aligned[inner].astype(float) - crop[inner].astype(float))
    assert error.mean() < 0.5 and error.max() <= 2  # measured 0.02 and 1; 3 px off the landmarks gives 3.6


def test_the_68_point_layout_gives_the_template_order() -> None:
    lm68 = np.zeros((68, 2))
    lm68[36:42] = ARCFACE_TEMPLATE[0] + np.array([[-5, 0], [-2, -2], [2, -2], [5, 0], [2, 2], [-2, 2]])
    lm68[42:48] = ARCFACE_TEMPLATE[1] + np.array([[-5, 0], [-2, -2], [2, -2], [5, 0], [2, 2], [-2, 2]])
    lm68[30], lm68[48], lm68[54] = ARCFACE_TEMPLATE[2], ARCFACE_TEMPLATE[3], ARCFACE_TEMPLATE[4]
    np.testing.assert_allclose(landmarks5_from_68(lm68), ARCFACE_TEMPLATE)


@pytest.fixture(scope="module")
def lpips_model(tmp_path_factory: pytest.TempPathFactory) -> LPIPS:
    """LPIPS with a random AlexNet trunk, saved as a torchvision-style file (classifier.* included) and loaded."""
    torch.manual_seed(0)
    trunk = AlexFeatures()
    state = dict(trunk.state_dict())
    state |= {"classifier.1.weight": torch.zeros(8, 9216), "classifier.6.bias": torch.zeros(1000)}  # kept small
    path = tmp_path_factory.mktemp("alex") / "alexnet-owt.pth"
    torch.save(state, path)
    model = load_lpips(path)
    assert all(torch.equal(model.net.state_dict()[k], v) for k, v in trunk.state_dict().items())
    return model


def test_lpips_agrees_with_torchmetrics(lpips_model: LPIPS, monkeypatch: pytest.MonkeyPatch) -> None:
    """torchmetrics' _LPIPS (a port of the lpips package) with its torchvision trunk swapped for ours: it loads
    the same alex.pth heads itself, so this checks the heads' mapping, the scaling, the taps and the reduction."""
    import torchmetrics.functional.image.lpips as tm

    trunk = lambda net, pretrained=False: copy.deepcopy(lpips_model.net.features)  # noqa: E731 - what _LPIPS calls
    monkeypatch.setattr(tm, "_get_tv_model_features", trunk)
    reference = tm._LPIPS(pretrained=True, net="alex").eval()
    for k, head in enumerate(lpips_model.heads):
        assert torch.equal(reference.lins[k].model[1].weight, head.weight)  # it did load the shipped file
    torch.manual_seed(1)
    a, b = torch.rand(3, 3, 96, 96), torch.rand(3, 3, 96, 96)
    b[0] = a[0] * 0.9 + 0.05  # one near pair, two unrelated pairs
    with torch.no_grad():
        ours, theirs = lpips_model(a, b), reference(a, b, normalize=True).view(-1)
    assert ours.shape == (3,)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-8)  # measured 1e-11; another trunk: 6e-3


def test_lpips_is_zero_for_equal_images_symmetric_and_positive_otherwise(lpips_model: LPIPS) -> None:
    torch.manual_seed(2)
    a, b = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        same, ab, ba = lpips_model(a, a), lpips_model(a, b), lpips_model(b, a)
    assert same.abs().max() < 1e-6
    torch.testing.assert_close(ab, ba)
    assert (ab > 0).all()


def test_lpips_refuses_a_file_without_the_alexnet_trunk(tmp_path: Path) -> None:
    path = tmp_path / "vgg.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3), "features.0.bias": torch.zeros(64)}, path)
    with pytest.raises(UserError):
        load_lpips(path)
