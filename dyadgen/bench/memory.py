"""Peak memory of one training step at real size, without the GPUs: the real model and step (forward,
backward, AdamW with its state) run on fake tensors (``FakeTensorMode``: shapes and dtypes, no data),
and :class:`LiveBytes` adds up every live tensor storage along the way.

- single process / DDP: DDP adds its gradient buckets (one more fp32 copy of the trainable gradients,
  accelerate's default ``gradient_as_bucket_view=False``);
- FSDP2 on W GPUs: the model sharded with ``fully_shard`` (one unit per Qwen layer and DiT block, as
  configs/accelerate/fsdp.yaml) over a fake process group of W ranks; one rank's sharded and gathered
  parameters, gradients, optimizer state and collective buffers are what its tensors hold.

Two steps run and the second is counted: the first creates the optimizer state. The method is
checked against a real step on this CPU (:func:`measure_cpu_step`, peak RSS); on a GPU the CUDA
context and the caching allocator's reserve come on top (``scripts/gpu_check.py`` measures both).
"""

from __future__ import annotations

import contextlib
import copy
import json
import resource
import sys
import time
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.utils._python_dispatch import TorchDispatchMode
from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer

from dyadgen.compat import fake_fsdp_process_group
from dyadgen.config import DyadGenConfig, load_config
from dyadgen.io.files import write_text_atomic
from dyadgen.models import DyadBatch, DyadGen
from dyadgen.models.backbone import build_language_model
from dyadgen.models.decoder import DiTBlock
from dyadgen.training.optim import build_optimizer

GIB = 2**30


@dataclass
class StepMemory:
    """One rank's peak during a training step, in bytes, with its parts at that moment."""

    peak: int
    parts: dict[str, int] = field(default_factory=dict)

    @property
    def peak_gib(self) -> float:
        return self.peak / GIB


def fake_batch(cfg: DyadGenConfig, latent: tuple[int, int, int], batch_size: int, codes: int) -> dict:
    """A training batch of the config's window (created inside the active fake mode)."""
    B, T = batch_size, cfg.window_frames
    pre, post = cfg.audio_margin
    return {"tokens": torch.randint(0, codes, (B, 2, T)), "latents": torch.randn(B, 2, T, *latent),  # [B,P,T,...]
            "refs": torch.randn(B, 2, *latent), "mask": torch.ones(B, T, dtype=torch.bool),
            "speaking": torch.zeros(B, 2, T, dtype=torch.bool), "emotion": torch.zeros(B, 2, T, dtype=torch.long),
            "text": ["一段对话"] * B, "tokens_before": torch.randint(0, codes, (B, 2, pre)),
            "tokens_after": torch.randint(0, codes, (B, 2, post))}


def step_config(cfg: DyadGenConfig) -> DyadGenConfig:
    """``cfg`` as the estimate runs it: the same shapes, with byte-level prompt ids (as many text tokens
    as Qwen's tokenizer gives, without fetching it) and no text dropout (a host sync fake tensors
    cannot make; it changes no shape)."""
    cfg = copy.deepcopy(cfg)
    cfg.backbone.text_tokenizer = "bytes"
    cfg.model.text_dropout = 0.0
    return cfg


def step_model(cfg: DyadGenConfig, latent: tuple[int, int, int]):
    """The model of ``cfg`` (as :func:`step_config` runs it) in training mode, with random weights; its frozen
    parameters become buffers, as FSDP wants them. Built on the current device (the meta or a fake mode)."""
    model = DyadGen.from_config(step_config(cfg), num_audio_codes=cfg.audio_tokenizer.num_codes,
                                latent_shape=latent).train()
    for module in model.modules():  # frozen parameters (the text table) as buffers, as FSDP wants them
        for name, param in list(module._parameters.items()):
            if param is not None and not param.requires_grad:
                del module._parameters[name]
                module.register_buffer(name, param.detach())
    return model


def step_optimizer(cfg: DyadGenConfig, model, *, foreach: bool):
    """The run's AdamW (``cfg.train``'s learning rates, decay and betas), foreach as on a GPU or not."""
    tc = cfg.train
    optimizer = build_optimizer(model, lr=tc.lr, backbone_lr=tc.backbone_lr, weight_decay=tc.weight_decay,
                                betas=(tc.adam_beta1, tc.adam_beta2))
    for group in optimizer.param_groups:
        group["foreach"] = foreach  # CUDA's default; the CPU's is the per-tensor loop
    return optimizer


class LiveBytes(TorchDispatchMode):
    """Bytes of every tensor storage alive, and their peak: each storage an op creates is counted
    until it is freed (tensor subclasses such as FSDP's DTensors by their local parts). O(1) per op:
    torch's MemTracker walks every module's statistics at every op, minutes for the real presets."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = self.peak = 0

    def add(self, t: torch.Tensor) -> None:
        if type(t) is not torch.Tensor and hasattr(t, "__tensor_flatten__") and not hasattr(t, "fake_mode"):
            for name in t.__tensor_flatten__()[0]:
                inner = getattr(t, name)
                if isinstance(inner, torch.Tensor):
                    self.add(inner)
            return
        storage = t.untyped_storage()
        key = storage._cdata
        if key in self.live:
            return
        self.live[key] = storage.nbytes()
        self.current += self.live[key]
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.add(t)
        return out


def _two_steps(model, optimizer, batch: dict, *, bf16_autocast: bool) -> StepMemory:
    """Two training steps under a :class:`LiveBytes` tracker: the second step's peak, counting the
    weights, gradients-to-be, optimizer state and batch alive when it starts."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16_autocast else contextlib.nullcontext()
    tracker = LiveBytes()
    for t in [*model.parameters(), *model.buffers(), *batch.values()]:
        if isinstance(t, torch.Tensor):
            tracker.add(t)
    resident = 0
    with tracker:
        for i in range(2):
            if i == 1:
                resident = tracker.current  # weights, optimizer state, the batch
                tracker.peak = tracker.current
            with autocast:
                loss = model(DyadBatch.from_dict(batch))["loss"]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            del loss
    return StepMemory(peak=tracker.peak, parts={"resident": resident, "step": tracker.peak - resident})


def estimate_step(cfg: DyadGenConfig, latent: tuple[int, int, int], batch_size: int, *, strategy: str = "single",
                  world_size: int = 1, bf16: bool = True, foreach: bool = True) -> StepMemory:
    """One rank's peak bytes in a training step of ``cfg`` at micro-batch ``batch_size``.

    strategy: "single" (one process), "ddp" (+ its gradient buckets) or "fsdp" (FSDP2 over
    ``world_size`` ranks). bf16: autocast (single, DDP) or FSDP's bf16 parameter policy."""
    if strategy == "fsdp":
        return _estimate_fsdp(cfg, latent, batch_size, world_size, bf16=bf16, foreach=foreach)
    with quiet(), FakeTensorMode():
        torch.manual_seed(0)
        model = step_model(cfg, latent)
        optimizer = step_optimizer(cfg, model, foreach=foreach)
        out = _two_steps(model, optimizer, fake_batch(cfg, latent, batch_size, cfg.audio_tokenizer.num_codes),
                         bf16_autocast=bf16)
    if strategy == "ddp":
        buckets = sum(p.numel() * 4 for p in model.parameters() if p.requires_grad)  # fp32 gradient buckets
        out.parts["ddp_buckets"] = buckets
        out.peak += buckets
    return out


def _estimate_fsdp(cfg: DyadGenConfig, latent: tuple[int, int, int], batch_size: int, world_size: int, *,
                   bf16: bool, foreach: bool) -> StepMemory:
    if dist.is_initialized():
        raise RuntimeError("the FSDP estimate needs a process without a process group (run it from `dyadgen bench`)")
    with fake_fsdp_process_group(world_size):
        mesh = init_device_mesh("cpu", (world_size,))
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16) if bf16 else \
            MixedPrecisionPolicy()
        with quiet(), FakeTensorMode():
            torch.manual_seed(0)
            model = step_model(cfg, latent)
            for module in model.modules():  # one unit per Qwen layer and DiT block, as configs/accelerate/fsdp.yaml
                if isinstance(module, (Qwen2DecoderLayer, DiTBlock)):
                    fully_shard(module, mesh=mesh, mp_policy=policy)
            fully_shard(model, mesh=mesh, mp_policy=policy)
            optimizer = step_optimizer(cfg, model, foreach=foreach)
            batch = fake_batch(cfg, latent, batch_size, cfg.audio_tokenizer.num_codes)
            return _two_steps(model, optimizer, batch, bf16_autocast=False)


@contextlib.contextmanager
def quiet():
    """No warnings inside (fake tensors make libraries warn about what they cannot see)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def largest_batch(peaks: dict[int, int], budget_bytes: float) -> int | None:
    """The largest micro-batch within ``budget_bytes`` from estimated peaks at 1, 2 and 4, projected
    linearly beyond 4 - when the growth per sample is the same between 1 and 2 as between 2 and 4
    (activations decide the peak). None when it is not: the peak still sits in the optimizer step
    at 4, where more samples cost little, and the batch at which activations take over is unknown
    (at least 4 fit)."""
    fitting = [b for b, peak in sorted(peaks.items()) if peak <= budget_bytes]
    if not fitting:
        return 0
    if fitting[-1] < 4:
        return fitting[-1]
    early, late = peaks[2] - peaks[1], (peaks[4] - peaks[2]) / 2
    if abs(late - early) > 0.25 * max(late, early, 1.0):
        return None
    return 4 + int((budget_bytes - peaks[4]) // max(late, 1.0))


def projected_peak(peaks: dict[int, int], batch: int) -> int:
    """The peak at ``batch``: estimated when it is one of ``peaks``, else projected from 2 and 4."""
    if batch in peaks:
        return peaks[batch]
    return int(peaks[4] + (batch - 4) * (peaks[4] - peaks[2]) / 2)


STRATEGIES = {"ddp_1gpu": ("ddp", 1), "fsdp_8gpu": ("fsdp", 8)}  # the targets: real_0.5b on one GPU, real on 8


def memory_table(presets: list[str], budget_gib: float = 80.0, config: DyadGenConfig | None = None) -> dict:
    """``{preset key: {strategy: {...}}}``: each rank's estimated peak (bf16, foreach AdamW as on GPUs)
    at micro-batches 1, 2 and 4, projected to the config's micro-batch and to the largest one within
    ``budget_gib``."""
    table: dict = {}
    for name in presets:
        cfg = config if config is not None else load_config(preset_name=name)
        latent = cfg.latent_shape
        rows = table.setdefault(cfg.preset.replace("-", "_"), {})
        for key, (strategy, world) in STRATEGIES.items():
            kwargs = {"strategy": strategy, "world_size": world, "bf16": True, "foreach": True}
            peaks = {b: estimate_step(cfg, latent, b, **kwargs).peak for b in (1, 2, 4)}
            micro, fits = cfg.train.batch_size, largest_batch(peaks, budget_gib * GIB)
            linear = fits is not None or micro in peaks  # else the projection past 4 is not valid
            at_micro = projected_peak(peaks, micro) / GIB if linear else None
            rows[key] = {"micro_batch": micro, "peak_gib_per_gpu": at_micro,
                         **{f"peak_gib_per_gpu_at_{b}": peak / GIB for b, peak in peaks.items()},
                         "largest_micro_batch": fits,
                         "window_seconds": cfg.window_frames / 25}
    return table


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def real_step(cfg: DyadGenConfig, latent: tuple[int, int, int], batch_size: int, workdir: str, *,
              device: str = "cpu", bf16: bool = False):
    """One real training step of ``cfg`` at full size: the backbone's architecture with random weights
    saved as a transformers folder and loaded through the real ``from_pretrained`` path, the real
    decoder, random latents. The AdamW state is made first (a zero-gradient step, as after a run's
    first step), so the step's peak holds weights, gradients, optimizer state and activations at once.
    Returns (model, loss, seconds)."""
    cfg = step_config(cfg)
    folder = Path(workdir) / "qwen"
    torch.manual_seed(0)
    build_language_model(cfg.backbone, pretrained=False).save_pretrained(folder)
    cfg.backbone.name_or_path = str(folder)
    model = DyadGen.from_config(cfg, num_audio_codes=cfg.audio_tokenizer.num_codes, latent_shape=latent,
                                pretrained_backbone=True).to(device).train()
    optimizer = step_optimizer(cfg, model, foreach=device != "cpu")
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    batch = {k: v.to(device) if torch.is_tensor(v) else v
             for k, v in fake_batch(cfg, latent, batch_size, cfg.audio_tokenizer.num_codes).items()}
    if device != "cpu":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with autocast:
        loss = model(DyadBatch.from_dict(batch))["loss"]
    loss.backward()
    optimizer.step()
    if device != "cpu":
        torch.cuda.synchronize()
    return model, float(loss), time.perf_counter() - start


def measure_cpu_step(cfg: DyadGenConfig, latent: tuple[int, int, int], batch_size: int, workdir: str) -> dict:
    """:func:`real_step` in fp32 on this CPU: the process's peak RSS, its RSS before anything was built,
    and the estimate of the same setting (base RSS + the tensors' peak). Run it in a fresh process
    with ``MALLOC_MMAP_THRESHOLD_=65536`` (glibc otherwise keeps freed 8-32 MiB blocks, and RSS stays
    above the live bytes)."""
    base = _rss_bytes()
    _, loss, seconds = real_step(cfg, latent, batch_size, workdir)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    estimate = estimate_step(cfg, latent, batch_size, strategy="single", bf16=False, foreach=False)
    return {"cpu_measured_peak_gib": peak / GIB, "cpu_base_rss_gib": base / GIB,
            "cpu_estimated_peak_gib": (base + estimate.peak) / GIB, "loss": loss, "step_seconds": seconds,
            "batch_size": batch_size}


def main() -> None:
    """``python -m dyadgen.bench.memory PRESET BATCH WORKDIR JSON``: :func:`measure_cpu_step` in this process."""
    preset, batch, workdir, out = sys.argv[1:5]
    cfg = load_config(preset_name=preset)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    result = measure_cpu_step(cfg, cfg.latent_shape, int(batch), workdir)
    write_text_atomic(out, json.dumps(result))


if __name__ == "__main__":
    main()
