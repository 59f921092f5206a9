"""The shared 25 Hz clock: video frames, audio samples and audio tokens all count on it."""

FPS = 25
SAMPLE_RATE = 16_000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640


def frames_for_samples(num_samples: int) -> int:
    """Frames (and audio tokens) covering ``num_samples`` at 16 kHz: whole frames only (floor).

    The same rule counts video frames of a clip (``frames_for_seconds``), so 10.0 s -> 250 and a
    trailing partial frame is dropped on both sides.
    """
    return int(num_samples) // SAMPLES_PER_FRAME


def frames_for_seconds(seconds: float) -> int:
    # round to the sample first so float error never loses a frame (10.0 s -> 250, not 249)
    return frames_for_samples(round(seconds * SAMPLE_RATE))
