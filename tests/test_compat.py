"""dyadgen.compat: each patch of a library's internals works on the installed version, and refuses, with
a message naming the patch and the versions, on a version it was not written for."""

import pytest
import torch

from dyadgen import compat


def test_a_version_outside_the_range_is_refused_by_name(monkeypatch):
    monkeypatch.setattr(compat, "version", lambda library: "99.0")
    with pytest.raises(compat.CompatError, match=r"the backbone's KV-cache window .*transformers>=5.24,<6; found 99.0"):
        compat.drop_cached_span(object(), 0, 1)
    with pytest.raises(compat.CompatError, match="accelerate"):
        compat.reset_accumulation(object())


def test_the_installed_libraries_are_in_range():
    for pin in (compat.ACCELERATE_STATE, compat.TORCH_FAKE_FSDP, compat.TRANSFORMERS_CACHE):
        compat.require(pin, "test")  # a local build such as 2.13.0+cpu counts as its release


def test_drop_cached_span_removes_those_positions_from_every_layer():
    from transformers import DynamicCache

    cache = DynamicCache()
    keys = torch.arange(2 * 1 * 6 * 2, dtype=torch.float32).reshape(2, 1, 6, 2)  # [N,heads,positions,d]
    for layer in range(2):
        cache.update(keys + layer, -keys - layer, layer)
    compat.drop_cached_span(cache, 1, 3)
    assert cache.get_seq_length() == 4
    for i, layer in enumerate(cache.layers):
        assert torch.equal(layer.keys, keys[:, :, [0, 3, 4, 5]] + i)
        assert torch.equal(layer.values, -keys[:, :, [0, 3, 4, 5]] - i)


def test_reset_accumulation_zeroes_accelerates_counter():
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    accelerator.step = 5
    compat.reset_accumulation(accelerator)
    assert accelerator.step == 0


def test_fake_process_group_and_sharding_propagation_are_restored():
    import torch.distributed as dist
    import torch.distributed.tensor._sharding_prop as sharding_prop

    before = sharding_prop.detect_fake_mode
    with compat.fake_fsdp_process_group(4):
        assert dist.get_world_size() == 4
        assert sharding_prop.detect_fake_mode is not before
    assert not dist.is_initialized() and sharding_prop.detect_fake_mode is before
