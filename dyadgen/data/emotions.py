"""SocioEmoDialog's emotion labels: 18 classes plus "Other", kept as its own class (DATASETS.md)."""
import numpy as np

from dyadgen.io.plots import pyplot

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


# Emotion frequencies of everyday life, percent of experience-sampling reports, women / men (Trampe, Quoidbach
# and Taquet 2015, PLoS ONE 10(12): e0145450): the distribution SocioEmoDialog's authors aim the dataset at.
TRAMPE_2015: dict[str, tuple[float, float]] = {
    "Joy": (34.02, 36.07), "Love": (30.10, 29.56), "Anxiety": (30.31, 26.13), "Satisfaction": (25.85, 30.59),
    "Alertness": (23.06, 27.44), "Hope": (22.34, 22.48), "Sadness": (21.30, 17.12), "Amusement": (15.78, 18.10),
    "Pride": (12.23, 15.73), "Disgust": (11.68, 10.46), "Anger": (10.27, 8.51), "Gratitude": (9.18, 8.33),
    "Guilt": (5.43, 5.57), "Fear": (5.68, 4.49), "Awe": (5.09, 5.31), "Offense": (5.19, 4.13),
    "Embarrassment": (4.57, 4.67), "Contempt": (0.97, 1.35),
}
DEVIATION = ("deviation score: mean absolute difference, in percentage points over the 18 classes, between the "
             "dataset's share of each emotion (\"Other\" and unknown labels left out of the shares) and the "
             "reference share (women + men) / 549.09 of Trampe et al. 2015; SocioEmoDialog's paper reports 0.64 "
             "but does not publish its formula, so this one is DyadGen's reading of it")


def reference_shares() -> dict[str, float]:
    """Trampe et al.'s share of each of the 18 emotions, percent (summing to 100)."""
    total = sum(w + m for w, m in TRAMPE_2015.values())  # 549.09
    return {e: 100 * (w + m) / total for e, (w, m) in TRAMPE_2015.items()}


def deviation_score(counts: dict[str, int]) -> tuple[float | None, dict[str, float], dict[str, float]]:
    """(score, dataset shares, reference shares) of per-emotion counts; the score is None without a label
    among the 18 (see DEVIATION)."""
    reference = reference_shares()
    labelled = sum(counts.get(e, 0) for e in reference)
    if labelled == 0:
        return None, {e: 0.0 for e in reference}, reference
    shares = {e: 100 * counts.get(e, 0) / labelled for e in reference}
    return sum(abs(shares[e] - reference[e]) for e in reference) / len(reference), shares, reference


def plot_distribution(path, named_counts: dict[str, dict[str, int]]) -> None:
    """A bar chart of each named distribution's shares beside Trampe et al.'s."""
    plt = pyplot()

    reference = reference_shares()
    names = list(reference)
    series = {f"{label} (deviation {deviation_score(c)[0] or 0:.2f})": deviation_score(c)[1]
              for label, c in named_counts.items()}
    series["Trampe et al. 2015"] = reference
    width = 0.8 / len(series)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(12, 4))
    for i, (label, shares) in enumerate(series.items()):
        ax.bar(x + i * width, [shares[e] for e in names], width, label=label)
    ax.set_xticks(x + 0.4 - width / 2, names, rotation=45, ha="right")
    ax.set_ylabel("share of labelled utterances (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
