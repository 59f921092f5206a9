"""The inference folder: what ``DyadGenPipeline.from_pretrained`` and ``dyadgen infer --checkpoint`` load.

    config.json              the resolved DyadGenConfig
    model.safetensors        the model's (EMA) weights, plus its own config as model_config.json
    audio_tokenizer/         the audio tokenizer (save_pretrained)
    vae/                     the video VAE (save_pretrained)
    fast_decoder/            optional: its tiny decoder (AutoencoderTiny, same latent space), for --fast-decoder
    text_tokenizer/          the text tokenizer of a Qwen backbone, so a folder works with the network off
    identities.safetensors   default identities: "latents" float [K,c,h,w], "images" uint8 [K,H,W,3];
                             identity 0 is the left person, 1 the right one

Training writes it next to its accelerate state. It is written to a temporary folder and renamed,
so a reader never sees half of one.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file

from dyadgen.config import DyadGenConfig, config_from_dict
from dyadgen.encoders import AUDIO_TOKENIZER_DIR, VAE_DIR, load_audio_tokenizer, load_video_vae
from dyadgen.encoders.audio_tokenizer import unconditional_codes
from dyadgen.encoders.video_vae import load_fast_decoder
from dyadgen.errors import UserError
from dyadgen.io.files import replace_folder
from dyadgen.models import DyadGen

IDENTITIES = "identities.safetensors"
FAST_DECODER_DIR = "fast_decoder"
TEXT_TOKENIZER_DIR = "text_tokenizer"


@dataclass
class InferenceFolder:
    config: DyadGenConfig
    model: Any  # dyadgen.models.DyadGen
    tokenizer: Any
    vae: Any
    identities: dict[str, torch.Tensor]

    def default_sampling(self, tokens: torch.Tensor, seed: int | None = None) -> dict[str, Any]:
        """The keyword arguments of ``DyadGen.generate`` / ``generate_stream`` that generate codes ``tokens``
        long [P,T] as ``dyadgen infer`` does by default: the checkpoint's sampler (``infer.*``), its guidance's
        unconditional branch (tracks and audio) included, with ``seed`` when given."""
        infer = self.config.infer
        return {**infer.sampler(), **({} if seed is None else {"seed": seed}),
                "unconditional": unconditional_codes(self.tokenizer, tokens, infer.unconditional_audio)}


def save_inference_folder(folder: str | os.PathLike, cfg: DyadGenConfig, model: Any, tokenizer: Any, vae: Any,
                          identities: dict[str, torch.Tensor] | None) -> Path:
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)  # model.safetensors + config.json of the model's own arguments
    (tmp / "config.json").replace(tmp / "model_config.json")
    cfg.save(tmp / "config.json")
    tokenizer.save_pretrained(tmp / AUDIO_TOKENIZER_DIR)
    vae.save_pretrained(tmp / VAE_DIR)
    if vae.fast_decoder is not None:
        vae.fast_decoder.save_pretrained(str(tmp / FAST_DECODER_DIR))
    text = model.text_tokenizer()
    if text is not None:
        text.save_pretrained(tmp / TEXT_TOKENIZER_DIR)
    if identities is not None:
        save_file({k: v.contiguous() for k, v in identities.items()}, str(tmp / IDENTITIES))
    return replace_folder(tmp, folder)


def load_inference_folder(folder: str | os.PathLike, *, device: str | torch.device = "cpu") -> InferenceFolder:
    folder = Path(folder)
    for name in ("config.json", "model_config.json", "model.safetensors"):
        if not (folder / name).is_file():
            raise UserError(f"{folder}: not a DyadGen checkpoint folder (missing {name})")
    cfg = config_from_dict(json.loads((folder / "config.json").read_text()))
    args = json.loads((folder / "model_config.json").read_text())
    args["pretrained_backbone"] = False  # the weights come from model.safetensors, never the Hub
    model = DyadGen(**args)
    load_model(model, str(folder / "model.safetensors"))
    identities = load_file(str(folder / IDENTITIES)) if (folder / IDENTITIES).is_file() else {}
    try:  # now, not at the first prompt: a missing tokenizer is the folder's problem
        if (folder / TEXT_TOKENIZER_DIR).is_dir():
            model.use_text_tokenizer(folder / TEXT_TOKENIZER_DIR)
        else:
            model.text_tokenizer()  # a folder from before text_tokenizer/ was saved: the backbone's own
    except ValueError as err:
        raise UserError(f"{folder}: no {TEXT_TOKENIZER_DIR}/ folder, and the backbone's text tokenizer cannot be "
                        f"loaded: {err}") from None
    vae = load_video_vae(folder / VAE_DIR)
    if (folder / FAST_DECODER_DIR).is_dir():
        vae.fast_decoder = load_fast_decoder(folder / FAST_DECODER_DIR)
    return InferenceFolder(cfg, model.to(device).eval(), load_audio_tokenizer(folder / AUDIO_TOKENIZER_DIR),
                           vae, identities)
