"""Inference: two voices in, a video of both people out.

read and check both tracks -> resample to 16 kHz -> pad the shorter one with silence -> tokenize ->
per chunk step: backbone step for both people (KV cache) -> decoder sampling -> VAE decode -> write
the frames as they come (memory flat in the audio's length) -> the stereo audio muxed in.

    pipe = DyadGenPipeline.from_pretrained("checkpoints/dyadgen-tiny")
    pipe("left.wav", "right.wav", out="dialogue.mp4")               # the checkpoint's settings
    frames = pipe.frames("left.wav", "right.wav", euler_steps=2, seed=3)  # ... with two of them changed
"""

from __future__ import annotations

import os
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import snapshot_download
from torch.profiler import record_function
from tqdm.auto import tqdm

from dyadgen.clock import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, frames_for_samples
from dyadgen.config import InferConfig
from dyadgen.config.loading import RENAMED
from dyadgen.data.emotions import EMOTIONS, emotion_id
from dyadgen.devices import pick_device, pick_dtype
from dyadgen.encoders import place_encoders
from dyadgen.encoders.audio_tokenizer import unconditional_codes
from dyadgen.errors import UserError
from dyadgen.inference.folder import InferenceFolder, load_inference_folder
from dyadgen.io.audio import load_audio, load_stereo
from dyadgen.io.video import VideoWriter
from dyadgen.media.crop import crop_portrait

BUNDLED = Path(__file__).resolve().parents[2] / "checkpoints" / "dyadgen-tiny"


def resolve_checkpoint(name: str | os.PathLike | None) -> Path:
    """A local inference folder for a path or a Hub name (from the local cache only)."""
    if name is None:
        if not (BUNDLED / "config.json").is_file():
            raise UserError(f"{BUNDLED}: the bundled checkpoint is missing; pass --checkpoint DIR "
                            "(a training run's inference folder)")
        return BUNDLED
    path = Path(name)
    if path.exists():
        return path
    try:
        return Path(snapshot_download(str(name), local_files_only=True))
    except Exception:
        raise UserError(f"{name}: no such folder, and not in the local Hugging Face cache; download it on a "
                        f"connected machine (`huggingface-cli download {name} --local-dir DIR`) and pass "
                        "--checkpoint DIR") from None


def read_tracks(left, right, dialogue, max_seconds: float) -> np.ndarray:
    """Both people's audio float32 [P,N] at 16 kHz, the shorter padded with silence."""
    if dialogue is not None:
        tracks = list(load_stereo(dialogue))
    else:
        if left is None or right is None:
            raise UserError("give both --left and --right, or one stereo --dialogue file")
        # a file to read and check, or samples already at 16 kHz (from a notebook)
        tracks = [t.astype(np.float32) if isinstance(t, np.ndarray) else load_audio(t) for t in (left, right)]
    n = max(len(t) for t in tracks)
    if max_seconds > 0:
        n = min(n, int(max_seconds * SAMPLE_RATE))
    n = frames_for_samples(n) * SAMPLES_PER_FRAME
    if n == 0:
        raise UserError("the audio is shorter than one video frame (40 ms)")
    return np.stack([np.pad(t[:n], (0, max(0, n - len(t)))) for t in tracks]).astype(np.float32)


class DyadGenPipeline:
    """Every part on one device: the audio tokenizer (in fp32: its codes are an argmin that a lower
    precision can flip), the backbone and decoder, and the VAE decoder (in ``dtype``)."""

    def __init__(self, folder: InferenceFolder, device: torch.device, dtype: torch.dtype = torch.float32):
        self.folder, self.device, self.dtype = folder, device, dtype
        self.model = folder.model.to(device=device, dtype=dtype)
        place_encoders(folder.tokenizer, folder.vae, device, dtype)
        self.size = (folder.config.data.height, folder.config.data.width)

    @classmethod
    def from_pretrained(cls, name: str | os.PathLike | None = None, *, device: str = "auto",
                        dtype: str = "auto") -> DyadGenPipeline:
        dev = pick_device(device)
        return cls(load_inference_folder(resolve_checkpoint(name)), dev, pick_dtype(dtype, dev))

    def references(self, left_ref, right_ref) -> torch.Tensor:
        """Reference latents [P,c,h,w]: user portraits by the crop rule (an array already at the model's
        size is taken as that crop, as evaluation passes it), else the default identities."""
        out = []
        for p, ref in enumerate((left_ref, right_ref)):
            if ref is None:
                if "latents" not in self.folder.identities:
                    raise UserError("this checkpoint has no default identities: give --left-ref and --right-ref")
                out.append(self.folder.identities["latents"][p].float())
                continue
            if isinstance(ref, np.ndarray) and ref.shape == (*self.size, 3):
                image = ref  # uint8 [H,W,3], cropped by the caller
            else:
                image = crop_portrait(ref, self.size)  # uint8 [H,W,3]
            pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1  # [1,3,H,W]
            out.append(self.folder.vae.encode(pixels)[0])
        return torch.stack(out).to(self.device, self.dtype)  # [P,c,h,w]

    def emotions(self, left: str | None, right: str | None) -> torch.Tensor | None:
        if left is None and right is None:
            return None
        ids = []
        for label in (left, right):
            i = emotion_id(label) if label else -1
            if label and i < 0:
                raise UserError(f"unknown emotion {label!r} (choose from {', '.join(EMOTIONS)})")
            ids.append(i)
        return torch.tensor(ids, device=self.device)

    def options(self, options: InferConfig | None = None, **changes) -> InferConfig:
        """The settings of one generation: ``options`` (default: the checkpoint's own, its config's
        ``infer`` section) with ``changes`` applied (a None value keeps the setting). The one place where
        the checkpoint's defaults meet a caller's choices: `dyadgen infer`, `dyadgen evaluate` and the
        Python API all come through here, so they generate alike."""
        changes = {RENAMED.get(("infer", key), key): value for key, value in changes.items()}  # older names
        unknown = sorted(set(changes) - {f.name for f in fields(InferConfig)})
        if unknown:
            raise TypeError(f"unknown inference setting(s) {', '.join(unknown)} (see dyadgen.config.InferConfig)")
        return replace(options or self.folder.config.infer, **{k: v for k, v in changes.items() if v is not None})

    def _stream(self, audio: np.ndarray, left_ref, right_ref, opt: InferConfig):
        """(number of chunk steps, iterator of latents [P,t,c,h,w]) for tracks [P,N] at 16 kHz."""
        if opt.fast_decoder and self.folder.vae.fast_decoder is None:
            raise UserError("--fast-decoder: this checkpoint folder has no fast decoder (fast_decoder/)")
        if opt.layout not in ("side-by-side", "separate"):
            raise UserError(f"--layout {opt.layout}: choose side-by-side or separate")
        if opt.guidance_mode == "distilled":
            student = self.model.student
            if student is None:
                raise UserError("--guidance-mode distilled: this checkpoint has no guidance-distilled student "
                                "(distil one with scripts/distill_guidance.py)")
            if opt.euler_steps not in student.cfg.distilled_steps:
                raise UserError(f"--steps {opt.euler_steps}: this checkpoint's guidance-distilled student runs "
                                f"{' or '.join(map(str, student.cfg.distilled_steps))} steps "
                                "(or use --guidance-mode batched)")
        for decoder in (self.model.decoder, self.model.student):
            if decoder is not None:
                decoder.use_compiled(opt.compile)
        tokens, unconditional = self.audio_codes(audio, opt)
        refs = self.references(left_ref, right_ref)
        emotion = self.emotions(opt.left_emotion or None, opt.right_emotion or None)
        chunks = self.model.generate_stream(tokens, refs, emotion=emotion, text=opt.text or None,
                                            unconditional=unconditional, **opt.sampler())
        return -(-tokens.shape[1] // self.model.cfg.chunk_frames), chunks

    def audio_codes(self, audio: np.ndarray, opt: InferConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Both tracks [P,N] at 16 kHz -> their codes long [P,T] and the guidance's unconditional codes
        [P,T] (None: the null code; both tracks' codes of digital silence under ``unconditional_audio``
        silence): what ``DyadGen.generate(tokens, refs, unconditional=...)`` takes."""
        with record_function("dyadgen.tokenizer"):
            tokens = torch.stack([self.folder.tokenizer.encode(a) for a in audio]).to(self.device)  # [P,T]
            return tokens, unconditional_codes(self.folder.tokenizer, tokens, opt.unconditional_audio)

    def frames(self, left=None, right=None, *, dialogue=None, left_ref=None, right_ref=None,
               options: InferConfig | None = None, **changes) -> np.ndarray:
        """Generate without writing a file: uint8 frames [P,T,H,W,3] (for notebooks and evaluation).
        Settings: :meth:`options` (``options`` and keyword ``changes``, e.g. ``euler_steps=2``)."""
        opt = self.options(options, **changes)
        _, chunks = self._stream(read_tracks(left, right, dialogue, opt.max_seconds), left_ref, right_ref, opt)
        out = [np.stack([self._pixels(chunk[p], opt.fast_decoder) for p in range(2)])
               for chunk in chunks]  # [P,t,H,W,3] each
        return np.concatenate(out, axis=1)

    def __call__(self, left=None, right=None, *, dialogue=None, out: str | os.PathLike = "dialogue.mp4",
                 left_ref=None, right_ref=None, options: InferConfig | None = None, progress: bool = True,
                 **changes) -> list[Path]:
        """Write the video(s); returns their paths (one side-by-side file, or left and right files)."""
        opt = self.options(options, **changes)
        audio = read_tracks(left, right, dialogue, opt.max_seconds)  # [P,N]
        num_steps, chunks = self._stream(audio, left_ref, right_ref, opt)
        H, W = self.size
        out = Path(out)
        if opt.layout == "separate":
            paths = [out.with_name(f"{out.stem}_left{out.suffix}"), out.with_name(f"{out.stem}_right{out.suffix}")]
            writers = [VideoWriter(p, width=W, height=H, audio=audio[i: i + 1]) for i, p in enumerate(paths)]
        else:
            paths = [out]
            writers = [VideoWriter(out, width=2 * W, height=H, audio=audio)]
        bar = tqdm(total=num_steps, desc="generating", unit="step", disable=not progress)
        start, done = time.perf_counter(), 0
        try:
            for chunk in chunks:  # [P,t,c,h,w]
                frames = [self._pixels(chunk[p], opt.fast_decoder) for p in range(2)]  # [t,H,W,3] each
                with record_function("dyadgen.writing"):
                    if len(writers) == 1:
                        writers[0].write(np.concatenate(frames, axis=2))
                    else:
                        for w, f in zip(writers, frames, strict=True):
                            w.write(f)
                done += chunk.shape[1]
                bar.update(1)
                # the real-time factor: compute seconds per second of video (below 1: faster than real time)
                bar.set_postfix(rtf=f"{(time.perf_counter() - start) / (done / FPS):.2f}")
            with record_function("dyadgen.writing"):
                for w in writers:
                    w.close()
        except BaseException:
            for w in writers:
                w.abort()
            raise
        finally:
            bar.close()
        return paths

    def _pixels(self, latents: torch.Tensor, fast: bool = False) -> np.ndarray:
        with record_function("dyadgen.vae_decode"):
            return self.folder.vae.decode_uint8(latents, fast=fast).numpy()  # [t,H,W,3], decoded on the device
