"""SocioEmoDialog's emotion labels: 18 classes plus "Other", kept as its own class (DATASETS.md)."""

EMOTIONS: tuple[str, ...] = (
    "Joy", "Satisfaction", "Amusement", "Love", "Hope", "Awe", "Alertness", "Pride", "Gratitude",
    "Sadness", "Disgust", "Anger", "Anxiety", "Guilt", "Fear", "Offense", "Embarrassment", "Contempt",
    "Other",
)
EMOTION_IDS: dict[str, int] = {name: i for i, name in enumerate(EMOTIONS)}
UNKNOWN_EMOTION = -1
_BY_LOWER = {name.lower(): i for i, name in enumerate(EMOTIONS)}

# how a face shows each label in the synthetic corpus: (mouth curve, brow tilt), both in [-1, 1]
POSITIVE = {"Joy", "Satisfaction", "Amusement", "Love", "Hope", "Pride", "Gratitude", "Awe"}
NEGATIVE = {"Sadness", "Disgust", "Anger", "Anxiety", "Guilt", "Fear", "Offense", "Embarrassment", "Contempt"}


def emotion_id(label: str | None) -> int:
    """Index into EMOTIONS; an unknown or missing label is UNKNOWN_EMOTION (-1), not an error."""
    return _BY_LOWER.get((label or "").strip().lower(), UNKNOWN_EMOTION)


def expression(label: str) -> tuple[float, float]:
    """(mouth curve, brow tilt) for a label: smiles and raised brows for positive ones."""
    if label in POSITIVE:
        return 1.0, 0.6
    if label in {"Anger", "Disgust", "Contempt", "Offense"}:
        return -0.8, -1.0
    if label in NEGATIVE:
        return -1.0, 0.8
    return 0.0, 0.0
