"""Write H.264 mp4 with muxed audio as frames arrive, and probe video files (PyAV, bundled FFmpeg)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from dyadgen.clock import FPS, SAMPLE_RATE
from dyadgen.errors import UserError


@dataclass
class VideoInfo:
    fps: float
    num_frames: int
    width: int
    height: int
    duration: float
    audio_sample_rate: int  # 0 when there is no audio stream
    audio_channels: int


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read a video's stream parameters (never assumed: SocioEmoDialog's are unverified)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        with av.open(str(path)) as box:
            if not box.streams.video:
                raise UserError(f"{path}: has no video stream")
            v = box.streams.video[0]
            fps = float(v.average_rate or v.guessed_rate or 0)
            duration = float(v.duration * v.time_base) if v.duration else float(box.duration or 0) / 1e6
            frames = v.frames or int(round(duration * fps))
            a = box.streams.audio[0] if box.streams.audio else None
            return VideoInfo(fps, frames, v.codec_context.width, v.codec_context.height, duration,
                             a.codec_context.sample_rate if a else 0, a.codec_context.channels if a else 0)
    except UserError:
        raise
    except Exception as err:
        raise UserError(f"{path}: not a readable video ({type(err).__name__}: {err})") from None


class VideoWriter:
    """Stream frames into an H.264 (yuv420p, faststart) mp4, with an AAC track muxed in.

    Frames are encoded as they are written, so memory stays flat in the video's length; audio
    (float32 [C,N], known up front) is interleaved by PyAV's muxer. The file appears under its
    name only when :meth:`close` succeeds (written to a hidden tmp file, then renamed).

    >>> with VideoWriter("out.mp4", width=224, height=128, audio=stereo) as w:  # doctest: +SKIP
    ...     w.write(frames)  # uint8 [T,H,W,3] or [H,W,3]
    """

    def __init__(self, path: str | os.PathLike, *, width: int, height: int, fps: int = FPS,
                 audio: np.ndarray | None = None, sample_rate: int = SAMPLE_RATE, crf: int = 20,
                 keyframe_every: int | None = None):
        if width % 2 or height % 2:
            raise ValueError(f"H.264 with yuv420p needs even sizes, got {width}x{height}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.stem}.tmp{self.path.suffix}")
        self._box = av.open(str(self._tmp), mode="w", options={"movflags": "+faststart"})
        self._video = self._box.add_stream("libx264", rate=fps)
        self._video.width, self._video.height, self._video.pix_fmt = width, height, "yuv420p"
        self._video.options = {"crf": str(crf), "preset": "veryfast"}
        if keyframe_every:  # a fixed keyframe interval, as camera recordings have (clips cut by copy start there)
            self._video.options |= {"g": str(keyframe_every), "keyint_min": str(keyframe_every), "sc_threshold": "0"}
        self._audio = None
        self._pending_audio = None
        if audio is not None:
            audio = np.atleast_2d(np.asarray(audio, np.float32))  # [C,N]
            self._audio = self._box.add_stream("aac", rate=sample_rate)
            self._audio.layout = "stereo" if audio.shape[0] == 2 else "mono"
            self._pending_audio = audio
            self._sample_rate = sample_rate
        self.fps = fps
        self.frames_written = 0

    def write(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames, np.uint8)
        for frame in frames if frames.ndim == 4 else frames[None]:  # [T,H,W,3]
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in self._video.encode(vf):
                self._box.mux(packet)
            self.frames_written += 1

    def _write_audio(self) -> None:
        audio, sr = self._pending_audio, self._sample_rate
        # cut the audio to the video's length so players see equal durations
        n = min(audio.shape[1], round(self.frames_written / self.fps * sr))
        audio = np.clip(audio[:, :n], -1.0, 1.0)
        block = 1024 * 16
        for start in range(0, n, block):
            piece = np.ascontiguousarray(audio[:, start:start + block])  # [C,n] planar float
            af = av.AudioFrame.from_ndarray(piece, format="fltp", layout=self._audio.layout.name)
            af.sample_rate = sr
            af.pts = start
            af.time_base = Fraction(1, sr)
            for packet in self._audio.encode(af):
                self._box.mux(packet)
        for packet in self._audio.encode(None):
            self._box.mux(packet)

    def close(self) -> Path:
        for packet in self._video.encode(None):
            self._box.mux(packet)
        if self._audio is not None:
            self._write_audio()
        self._box.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._box.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def stream_copy_cut(src: str | os.PathLike, dst: str | os.PathLike, start: float, end: float) -> Path:
    """Cut ``[start, end]`` seconds of ``src`` into ``dst`` without re-encoding, as
    ``ffmpeg -ss START -to END -i SRC -c copy DST`` does (SocioEmoDialog's video_processor.py): the
    video starts on the keyframe at or before ``start``; timestamps are shifted so that ``start`` is
    0, and the pre-roll frames get negative timestamps, which the mp4 edit list hides from decoders
    that apply it (PyAV/FFmpeg) but not from those that ignore it (decord). Written then renamed."""
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.stem}.tmp{dst.suffix}")
    try:
        with av.open(str(src)) as inp, av.open(str(tmp), "w", format="mp4") as out:
            streams = [*inp.streams.video[:1], *inp.streams.audio[:1]]
            outs = {s.index: out.add_stream_from_template(s) for s in streams}
            inp.seek(int(start * av.time_base), backward=True)  # the keyframe at or before start
            started = False
            for packet in inp.demux(*streams):
                if packet.pts is None:  # a demuxer's flush packet
                    continue
                t = float(packet.pts * packet.time_base)
                if packet.stream.type == "video":
                    started = started or packet.is_keyframe
                    if not started or t > end:
                        continue
                elif t + float((packet.duration or 0) * packet.time_base) <= start or t > end:
                    continue
                shift = round(start / packet.time_base)
                packet.pts, packet.dts = packet.pts - shift, packet.dts - shift
                packet.stream = outs[packet.stream.index]
                out.mux(packet)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dst)
    return dst
