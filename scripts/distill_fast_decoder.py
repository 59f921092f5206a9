"""Distil a tiny decoder (diffusers AutoencoderTiny, TAEF1's class) from a checkpoint's VAE decoder, in the
same latent space, and save it in the checkpoint folder as fast_decoder/ (what `dyadgen infer
--fast-decoder` uses).

    python scripts/distill_fast_decoder.py --checkpoint checkpoints/dyadgen-tiny --data ROOT [--minutes 20]

The student learns to reproduce the full decoder's frames (the teacher) from four kinds of latents: the
VAE's own latents of a corpus's faces (the training split of their dialogue ids); the same faces recoloured
and mirrored (``--augment`` copies: each colour channel's gain and offset drawn at random, so the student
learns the decoder's colours rather than the training people's - without them it matched the training faces
at 28.8 dB and new faces at 24.0 dB with a 6 level colour shift); and latents the checkpoint's model
generates from those dialogues' audio (``--generated-seconds`` per dialogue: what the fast decoder meets at
inference, which lies off the encoder's manifold - a student trained on encoder latents alone decoded
generated ones with another background colour); and people drawn fresh (``--drawn``, dyadgen.data.faces
under random poses: looks no corpus holds - with the corpus alone the student matched its training people at
29.6 dB and held-out ones at 26.6). ``--init`` starts from an existing fast decoder. The teacher decodes
every one of them once. The loss: L1 + MSE against the teacher, plus the difference of each frame's mean
colour (so the picture keeps its colours where the student cannot match every detail), plus, on pairs of
consecutive generated frames (a quarter of each batch), the L1 distance of the student's change from one frame
to the next from the teacher's (``--temporal-weight``, off by default until a full run measures it: a student
trained on single frames turned a listener's small latent changes into visible flicker), and on the same pairs
the difference of the student's mean absolute change from the teacher's (``--motion-weight``: a student that
blurs moving detail changes less while a person speaks, which flattens their speaking/listening motion
contrast); the learning rate
decays on a cosine. Its PSNR against the full decoder on the held-out split (people it never saw), for
encoded, generated and drawn latents, beside the same on a sample of its training latents, and on held-out
generated frames the mean frame-to-frame change of its frames over the full decoder's (``frame_change_ratio``,
1 = no flicker of its own), are printed and saved beside it (fast_decoder/distillation.json); with ``--init``,
the starting decoder's figures on the same held-out latents come beside them (``init_decoder``), so a
fine-tuning run shows its own baseline. The real presets use TAEF1 itself.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_vae import collect_frames, psnr  # noqa: E402 - the frame collection of the VAE's own training

from dyadgen.data.faces import FaceLook, FacePose, draw_face  # noqa: E402
from dyadgen.encoders.video_vae import load_fast_decoder  # noqa: E402
from dyadgen.inference.folder import FAST_DECODER_DIR, load_inference_folder  # noqa: E402
from dyadgen.training.distill import dialogue_inputs  # noqa: E402


def student(latent_channels: int, factor: int, width: int, depth: int = 2):
    """An AutoencoderTiny whose decoder has ``depth`` blocks at every resolution but the last (one there,
    where a block costs 4x the one before)."""
    from diffusers import AutoencoderTiny

    blocks = 1 + factor.bit_length() - 1  # a x2 upsampling between consecutive blocks
    channels = (width,) * blocks
    return AutoencoderTiny(latent_channels=latent_channels, encoder_block_out_channels=channels,
                           decoder_block_out_channels=channels, num_encoder_blocks=(1,) * blocks,
                           num_decoder_blocks=(depth,) * (blocks - 1) + (1,))


def recoloured(frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Frames in [-1,1] [N,3,H,W], each with a random gain (0.75..1.25) and offset (-0.25..0.25) per colour
    channel, half of them mirrored."""
    n = len(frames)
    gain = 0.75 + 0.5 * torch.rand(n, 3, 1, 1, generator=generator)
    offset = 0.5 * torch.rand(n, 3, 1, 1, generator=generator) - 0.25
    out = (frames * gain + offset).clamp(-1, 1)
    flip = torch.rand(n, generator=generator) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def drawn_faces(n: int, height: int, width: int, rng: np.random.Generator) -> torch.Tensor:
    """``n`` people drawn fresh (dyadgen.data.faces: a random look each), each under a random pose and mouth
    opening: frames in [-1,1] [n,3,H,W]."""
    faces = np.stack([draw_face(FaceLook.random(rng), FacePose.random(rng), height, width)
                      for _ in range(n)])  # uint8 [n,H,W,3]
    return torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1


def raw(vae, scaled: torch.Tensor) -> torch.Tensor:
    """Scaled latents (what the model generates) -> the VAE's own latents (what a decoder is handed)."""
    return scaled / vae.scale + vae.shift


def generated_latents(folder, data: str, seconds: float, videos: int, seed: int
                      ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Raw latents [N,c,h,w] the model generates from the first ``seconds`` of the audio of ``videos``
    training videos and of up to 3 held-out ones (each person's reference: their first frame), each with the
    indices [M] of its frames whose next frame (same person, same video) follows in the set: ((train,
    train_next), (held, held_next))."""
    out: dict[bool, list[torch.Tensor]] = {True: [], False: []}
    for train, limit in ((True, videos), (False, 3)):
        for _, tokens, refs in tqdm(dialogue_inputs(folder, data, seconds, train=train, limit=limit), total=limit,
                                    desc="generate"):
            with torch.no_grad():  # the checkpoint's own sampler, its guidance's unconditional audio included
                z = folder.model.generate(tokens, refs, **folder.default_sampling(tokens, seed))  # [P,T,c,h,w]
            out[train] += list(raw(folder.vae, z))  # P sequences [T,c,h,w]
    if not out[False]:  # a tiny corpus may hash every dialogue into train: hold out the last video
        out[False] += [out[True].pop(), out[True].pop()]

    def with_pairs(sequences: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        starts = np.cumsum([0] + [len(s) for s in sequences[:-1]])
        pairs = torch.cat([torch.arange(a, a + len(s) - 1) for a, s in zip(starts, sequences, strict=True)])
        return torch.cat(sequences), pairs  # [N,c,h,w], [M]

    return with_pairs(out[True]), with_pairs(out[False])


def frame_change(frames: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """How much each frame changes into the next, in [-1,1] units: [M,3,H,W] of frames [N,3,H,W]."""
    return frames[pairs + 1].float() - frames[pairs].float()


def teacher(vae, z: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([vae.vae.decode(x).sample.clamp(-1, 1).to(dtype)
                          for x in tqdm(z.split(64), desc="teacher", leave=False)])  # [N,3,H,W]


def decode(net, z: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([net.decode(x).sample.clamp(-1, 1) for x in z.split(64)])


def colour_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference of the frames' mean colours, in 0..255 levels."""
    return float((a.mean((2, 3)) - b.mean((2, 3))).abs().mean() * 127.5)


def held_out_measure(vae, held: torch.Tensor, frames: torch.Tensor | None, pairs: torch.Tensor | None):
    """A function of a fast decoder giving its figures on one held-out set of raw latents [N,c,h,w]: PSNR and
    mean colour gap against the full decoder (decoded here once); with ``frames`` (uint8 [N,3,H,W], the frames
    the latents encode) both decoders' PSNR against them; with ``pairs`` (indices of frames whose next frame
    follows) the fast decoder's frame-to-frame change over the full decoder's (``frame_change_ratio``, 1 = no
    flicker of its own)."""
    full = teacher(vae, held)  # [N,3,H,W]
    full_change = frame_change(full, pairs) if pairs is not None else None

    def measure(net) -> dict[str, float]:
        fast = decode(net, held)
        out = {"held_out_frames": len(held), "psnr_vs_full_decoder_db": psnr(fast, full),
               "mean_colour_gap_levels": colour_gap(fast, full)}
        if frames is not None:
            target = frames.float() / 127.5 - 1
            out["psnr_full_decoder_vs_frames_db"] = psnr(full, target)
            out["psnr_fast_decoder_vs_frames_db"] = psnr(fast, target)
        if full_change is not None:
            fast_change = frame_change(fast, pairs)
            out["frame_change_ratio"] = float(fast_change.abs().mean() / full_change.abs().mean())
            out["frame_change_psnr_db"] = psnr(fast_change, full_change)
        return out

    return measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="an inference folder")
    parser.add_argument("--data", required=True, help="a corpus in SocioEmoDialog's layout")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--width", type=int, default=32, help="channels of every student block")
    parser.add_argument("--depth", type=int, default=2, help="student blocks per resolution (one at the last)")
    parser.add_argument("--augment", type=int, default=2,
                        help="recoloured, mirrored copies of the encoded training frames (0: none)")
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--max-frames", type=int, default=8000, help="encoded training frames (a random subset)")
    parser.add_argument("--generated-seconds", type=float, default=10.0,
                        help="seconds generated per video whose latents join the training set (0: none)")
    parser.add_argument("--generated-videos", type=int, default=10, help="training videos generated from")
    parser.add_argument("--colour-weight", type=float, default=1.0)
    parser.add_argument("--temporal-weight", type=float, default=0.0,
                        help="weight of the frame-to-frame term: a quarter of each batch is pairs of consecutive "
                             "generated frames whose change from one to the next must match the full decoder's "
                             "(0: none)")
    parser.add_argument("--motion-weight", type=float, default=0.0,
                        help="weight of the difference of each pair's mean absolute change from the full decoder's "
                             "(with --temporal-weight's pairs; 0: none)")
    parser.add_argument("--drawn", type=int, default=10000,
                        help="people drawn fresh (one frame each, random pose) whose latents join the training set: "
                             "new looks, so the student learns the decoder rather than the corpus's people (0: none)")
    parser.add_argument("--init", default=None,
                        help="start from this fast decoder folder (same --width and --depth)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    folder = load_inference_folder(args.checkpoint)
    vae, cfg = folder.vae, folder.config
    train_frames, held_frames = collect_frames(args.data, (cfg.data.height, cfg.data.width), args.stride, cfg)
    train_frames = train_frames[torch.randperm(len(train_frames))[: args.max_frames]]
    generator = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        z_train = raw(vae, vae.encode(train_frames.float() / 127.5 - 1))  # [N,c,h,w]
        z_held = raw(vae, vae.encode(held_frames.float() / 127.5 - 1))
        z_aug = torch.cat([raw(vae, vae.encode(recoloured(x.float() / 127.5 - 1, generator)))
                           for _ in range(args.augment) for x in train_frames.split(256)]) if args.augment else None
    sets = {"encoded": (z_train if z_aug is None else torch.cat([z_train, z_aug]), z_held)}
    if args.drawn:  # and 500 more people drawn after them, held out
        with torch.no_grad():
            z = raw(vae, vae.encode(drawn_faces(args.drawn + 500, cfg.data.height, cfg.data.width,
                                                np.random.default_rng(args.seed))))  # [N,c,h,w]
        sets["drawn"] = (z[: args.drawn], z[args.drawn:])
    pairs = held_pairs = None  # indices of consecutive generated frames (training pairs: into z_all)
    if args.generated_seconds > 0:
        (z_gen, pairs), (z_gen_held, held_pairs) = generated_latents(
            folder, args.data, args.generated_seconds, args.generated_videos, args.seed)
        sets["generated"] = (z_gen, z_gen_held)  # the last set: its frames end z_all
    z_all = torch.cat([s[0] for s in sets.values()])
    if pairs is not None:
        pairs = pairs + len(z_all) - len(z_gen)
    paired = pairs is not None and (args.temporal_weight > 0 or args.motion_weight > 0)
    k = args.batch // 4 if paired else 0  # pairs per batch
    target_all = teacher(vae, z_all, torch.float16)  # half the memory; 1e-3 of the [-1,1] range
    print(", ".join(f"{len(tr)} {name} training latents, {len(he)} held-out" for name, (tr, he) in sets.items()))
    held_out = {name: held_out_measure(vae, held, held_frames if name == "encoded" else None,
                                       held_pairs if name == "generated" else None)
                for name, (_, held) in sets.items()}
    net = student(vae.latent_channels, vae.factor, args.width, args.depth)
    baseline = None
    if args.init:
        net.load_state_dict(load_fast_decoder(args.init).state_dict())  # a shape mismatch is an error here
        net.eval()
        baseline = {name: measure(net) for name, measure in held_out.items()}  # the same held-out latents
        net.train()
    opt = torch.optim.AdamW(net.decoder.parameters(), lr=args.lr, weight_decay=0.0)
    start = time.monotonic()
    deadline, step = start + args.minutes * 60, 0
    bar = tqdm(desc="distil", unit="step")
    while time.monotonic() < deadline:
        progress = (time.monotonic() - start) / (args.minutes * 60)
        for group in opt.param_groups:
            group["lr"] = args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
        idx = torch.randint(0, len(z_all), (args.batch - 2 * k,))
        if k:  # the batch ends with k frames and then the k frames that follow them
            first = pairs[torch.randint(0, len(pairs), (k,))]
            idx = torch.cat([idx, first, first + 1])
        out, target = net.decode(z_all[idx]).sample, target_all[idx].float()  # [B,3,H,W] in [-1,1]
        loss = ((out - target).abs().mean() + (out - target).pow(2).mean()
                + args.colour_weight * (out.mean((2, 3)) - target.mean((2, 3))).abs().mean())
        if k:  # the student's frame-to-frame change against the teacher's: no flicker of its own
            change = out[-k:] - out[-2 * k: -k]  # [k,3,H,W]
            target_change = target[-k:] - target[-2 * k: -k]
            loss = loss + args.temporal_weight * (change - target_change).abs().mean()
            # how much each pair changes in all (what dyadgen.eval.motion.motion_energy measures): a student that
            # blurs moving detail changes less while a person speaks and flattens their motion contrast
            loss = loss + args.motion_weight * (change.abs().mean((1, 2, 3))
                                                - target_change.abs().mean((1, 2, 3))).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    net.eval()
    report = {"steps": step, "minutes": args.minutes, "width": args.width, "depth": args.depth,
              "augment": args.augment, "drawn_faces": args.drawn, "temporal_weight": args.temporal_weight,
              "motion_weight": args.motion_weight,
              "init": args.init, "training_latents": {name: len(tr) for name, (tr, _) in sets.items()},
              "parameters": sum(p.numel() for p in net.decoder.parameters())}
    if baseline is not None:
        report["init_decoder"] = baseline
    for name, (seen, _) in sets.items():
        seen = seen[torch.randperm(len(seen), generator=generator)[:500]]  # beside held-out: over- or underfit?
        report[name] = {**held_out[name](net),
                        "training_psnr_vs_full_decoder_db": psnr(decode(net, seen), teacher(vae, seen))}
    out_dir = Path(args.checkpoint) / FAST_DECODER_DIR
    tmp = out_dir.with_name(f".{FAST_DECODER_DIR}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    net.save_pretrained(str(tmp))
    (tmp / "distillation.json").write_text(json.dumps(report, indent=2))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
