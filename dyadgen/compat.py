"""Every place DyadGen reaches into a library's internals, in one module.

Each patch names the library versions it was written and tested for and checks them before it touches
anything: outside that range it raises :class:`CompatError` saying which patch, which version it found and
what to re-check, so an upgrade breaks here with the reason instead of silently somewhere else.
tests/test_compat.py runs every patch against the installed libraries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import torch
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from dyadgen.errors import UserError

# (library, the versions the patch was written and tested for)
ACCELERATE_STATE = ("accelerate", ">=1.15,<1.16")  # PartialState._shared_state, Accelerator.step
TORCH_FAKE_FSDP = ("torch", ">=2.11,<2.14")  # DTensor sharding propagation, torch.testing's fake process group
TRANSFORMERS_CACHE = ("transformers", ">=5.24,<6")  # DynamicCache.layers[i].keys / .values


class CompatError(UserError, RuntimeError):
    """A library outside the versions a patch of its internals was written for."""


def require(pin: tuple[str, str], patch: str) -> None:
    """Raise :class:`CompatError` unless the installed ``pin[0]`` lies in ``pin[1]``."""
    library, spec = pin
    found = Version(version(library))
    if Version(found.base_version) not in SpecifierSet(spec):  # 2.13.0+cpu counts as 2.13.0
        raise CompatError(f"{patch} reaches into {library}'s internals and was written for {library}{spec}; "
                          f"found {found}: re-check dyadgen/compat.py (and its test) before using this version")


def fsdp_on_cpu(accelerator: Any, plugin: Any) -> None:
    """Switch an accelerate state that fell back to MULTI_CPU (accelerate picks FSDP only on accelerators)
    over to FSDP: the accelerator's state and the process-wide shared state that later objects read."""
    require(ACCELERATE_STATE, "FSDP2 on CPU processes")
    # imported on use, here and below: model code imports this module and must not pull in accelerate or
    # torch's test utilities
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType  # on use, as above

    accelerator.state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    accelerator.state.fsdp_plugin = plugin


def reset_accumulation(accelerator: Any) -> None:
    """Zero accelerate's gradient-accumulation counter, so that ``accumulate`` syncs on exactly the last
    micro-batch of each of our steps (its counter would otherwise drift with a skipped step)."""
    require(ACCELERATE_STATE, "the per-step accumulation counter")
    accelerator.step = 0


@contextlib.contextmanager
def fake_fsdp_process_group(world_size: int) -> Iterator[None]:
    """A fake process group of ``world_size`` ranks in this one process, with DTensor's sharding
    propagation kept out of an enclosing FakeTensorMode (it would build global-shape tensors there, which
    a memory tracker would count as this rank's)."""
    require(TORCH_FAKE_FSDP, "the FSDP memory estimate")
    import torch.distributed as dist  # on use: torch.distributed and its test utilities are only for this estimate
    import torch.distributed.tensor._sharding_prop as sharding_prop  # on use, as above
    from torch.testing._internal.distributed.fake_pg import FakeStore  # on use, as above

    original = sharding_prop.detect_fake_mode
    sharding_prop.detect_fake_mode = lambda *args, **kwargs: None
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()
        sharding_prop.detect_fake_mode = original


def drop_cached_span(cache: Any, start: int, stop: int) -> None:
    """Remove key/value positions [start, stop) from every layer of a transformers DynamicCache, in place."""
    require(TRANSFORMERS_CACHE, "the backbone's KV-cache window")
    for layer in cache.layers:
        layer.keys = torch.cat([layer.keys[:, :, :start], layer.keys[:, :, stop:]], dim=2)
        layer.values = torch.cat([layer.values[:, :, :start], layer.values[:, :, stop:]], dim=2)
