"""Clip decoding: two people from one frame, 25 fps from any source, wav re-alignment, corrupt files."""

import numpy as np
import pytest

from dyadgen.data import read_turn
from dyadgen.data.clips import ClipError, align_offset, decode_frames
from dyadgen.io.audio import write_wav
from dyadgen.io.video import VideoWriter


def speechlike(n, seed):
    rng = np.random.default_rng(seed)
    env = np.repeat(rng.random(n // 800 + 1) > 0.5, 800)[:n]
    return (rng.standard_normal(n) * 0.2 * env).astype(np.float32)


def write_clip(path, seconds, fps, left_rgb=(255, 0, 0), right_rgb=(0, 0, 255), audio=None):
    frames = int(seconds * fps)
    image = np.zeros((96, 160, 3), np.uint8)
    image[:, :80] = left_rgb
    image[:, 80:] = right_rgb
    with VideoWriter(path, width=160, height=96, fps=fps, audio=audio) as w:
        for i in range(frames):
            frame = image.copy()
            frame[:4, :4] = i % 256  # a frame counter in the corner
            w.write(frame)


def test_red_left_blue_right(tmp_path):
    audio = np.stack([speechlike(32000, 0), speechlike(32000, 1)])
    write_clip(tmp_path / "c.mp4", 2.0, 25, audio=audio)
    write_wav(tmp_path / "l.wav", audio[0])
    write_wav(tmp_path / "r.wav", audio[1])
    turn = read_turn(tmp_path / "c.mp4", tmp_path / "l.wav", tmp_path / "r.wav", size=(64, 56))
    P, T, three, H, W = turn.frames.shape
    assert (P, three, H, W) == (2, 3, 64, 56) and abs(T - 50) <= 1
    assert turn.audio.shape == (2, T * 640)
    left, right = turn.frames[0].mean(axis=(0, 2, 3)), turn.frames[1].mean(axis=(0, 2, 3))  # [3] RGB means
    assert left[0] > 200 and left[2] < 40
    assert right[2] > 200 and right[0] < 40


def test_thirty_fps_source_gives_25_fps_and_matching_audio(tmp_path):
    audio = np.stack([speechlike(48000, 2), speechlike(48000, 3)])
    write_clip(tmp_path / "c.mp4", 3.0, 30, audio=audio)
    frames = decode_frames(tmp_path / "c.mp4")
    assert len(frames) == 75
    write_wav(tmp_path / "l.wav", audio[0])
    write_wav(tmp_path / "r.wav", audio[1])
    turn = read_turn(tmp_path / "c.mp4", tmp_path / "l.wav", tmp_path / "r.wav", size=(64, 56))
    assert turn.frames.shape[1] == 75 and turn.audio.shape[1] == 75 * 640


def test_shifted_wav_segment_is_realigned(tmp_path):
    audio = np.stack([speechlike(48000, 4), speechlike(48000, 5)])
    write_clip(tmp_path / "c.mp4", 3.0, 25, audio=audio)
    shift = 3 * 640  # the clip starts 3 frames before its wav segments (a keyframe before the cut)
    write_wav(tmp_path / "l.wav", audio[0, shift:])
    write_wav(tmp_path / "r.wav", audio[1, shift:])
    assert abs(align_offset(audio.sum(0), audio[:, shift:].sum(0), 16000) - shift) <= 1
    turn = read_turn(tmp_path / "c.mp4", tmp_path / "l.wav", tmp_path / "r.wav", size=(64, 56))
    n = min(turn.audio.shape[1], audio.shape[1])
    corr = np.corrcoef(turn.audio[0, shift:n], audio[0, shift:n])[0, 1]
    assert corr > 0.9  # the segment sits where it belongs in the clip again
    assert np.abs(turn.audio[0, : shift - 64]).max() == 0  # the part before the cut is silence


def test_corrupt_clip_is_a_clip_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))
    with pytest.raises(ClipError, match="bad.mp4"):
        decode_frames(bad)
