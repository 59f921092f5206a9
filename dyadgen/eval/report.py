"""Writing an evaluation: metrics.json (every figure with its definition, n and interval), report.md
(tables per role and per person, the model beside the baselines) and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dyadgen.clock import FPS
from dyadgen.eval.measure import load
from dyadgen.eval.scoring import windows
from dyadgen.eval.stats import Figure
from dyadgen.io.plots import pyplot

MOTION = [f"{m}_{g}/all" for m in ("fd", "p_fd", "mse", "rpcc", "variance", "diversity", "sid")
          for g in ("exp", "jaw", "pose")]
VIDEO = [f"video_{k}/all" for k in ("occupancy", "face_x", "face_y", "face_size", "face_jitter", "blink_rate",
                                    "eye_openness")]
HEADLINE = ["mouth_env_corr/speaking", "av_offset/speaking", "lse_d/all", "lse_c/all", "lse_run_d/speaking",
            "lse_run_c/speaking", "false_talk/listening", "silent_open/silent", "synchrony/listening",
            "synchrony_gap/listening", "psnr/all", "ssim/all", "lpips/all", "fid/all", "fvd/all", "identity/all",
            "csim/all", *MOTION, *VIDEO, "emotion_war/all", "emotion_uar/all", "emotion_condition_shift/all",
            "emotion_condition_hit/all", "face_found/all", "face_detected/all",
            "synthetic_mouth_env_corr/speaking", "synthetic_false_talk/listening", "synthetic_mouth_corr/speaking",
            "synthetic_nod_corr/all"]
BY_ROLE = ["psnr", "ssim", "identity"]


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_json(path: Path, scores: dict, run) -> None:
    def plain(x):
        if isinstance(x, Figure):
            return x.to_json()
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x

    body = {"windows_scored": scores["windows"], "dialogues": scores.get("dialogues", 0),
            "systems": plain(scores["figures"]),
            "per_side": plain(scores["per_side"]), "drift_per_minute": scores["drift"],
            "failed": [{"item": k, "reason": r} for k, r in run.failed],
            "unavailable_networks": run.missing_networks,
            "network_weights": getattr(run, "network_sources", {})}
    _write(path, json.dumps(body, indent=2))


def table(figures: dict[str, dict[str, Figure]], keys: list[str]) -> str:
    systems = list(figures)
    rows = [f"| metric | {' | '.join(systems)} |", "|---|" + "---|" * len(systems)]
    for key in keys:
        if not any(key in figures[s] for s in systems):
            continue
        cells = [figures[s][key].text() if key in figures[s] else "n/a" for s in systems]
        rows.append(f"| {key} | {' | '.join(cells)} |")
    return "\n".join(rows)


def _generated_by(settings: Path) -> list[str]:
    """Which checkpoint(s) generated the windows and with what sampler settings (from run.json)."""
    if not settings.is_file():
        return []
    run = json.loads(settings.read_text())
    skip = ("measures", "checkpoint", "weights", "compared", "seconds", "dtype")
    line = lambda name, s: f"- {name}: `{s['checkpoint']}`; " + ", ".join(  # noqa: E731
        f"{k} {s[k]}" for k in s if k not in skip)
    lines = [line("model (and swapped)", run)]
    if "compared" in run:
        lines.append(line("compared", run["compared"]))
    return [*lines, ""]


def write_markdown(path: Path, scores: dict, run) -> None:
    figures = scores["figures"]
    if not figures:
        _write(path, "# DyadGen evaluation\n\nNo window was scored.\n")
        return
    any_system = next(iter(figures.values()))
    role_keys = [f"{m}/{r}" for m in BY_ROLE for r in ("speaking", "listening", "silent")]
    lines = ["# DyadGen evaluation", "",
             f"{scores['windows']} windows of {scores.get('dialogues', 0)} dialogues scored, {len(run.failed)} "
             "skipped. Values: mean over windows (each the mean of its two people), or one pooled figure (SID, "
             "FID, FVD) [95 % interval from resampling the dialogues]; n/a: unavailable (see Definitions).", "",
             *_generated_by(path.parent / "run.json"),
             "## Headline", "", table(figures, HEADLINE), "",
             "## By role (the person speaking, listening, or both silent)", "", table(figures, role_keys), ""]
    for system, heading in (("model", "Model"), ("compared", "Compared checkpoint (--compare)")):
        if system in scores["per_side"]:
            lines += [f"## {heading}, per person", "", table(scores["per_side"][system], HEADLINE), ""]
    drift = scores["drift"].get("model", {})
    if len(drift.get("minute", [])) > 1:
        lines += ["## Drift over long windows (per minute of window time)", "",
                  "| system | " + " | ".join(f"minute {m}" for m in drift["minute"]) + " |",
                  "|---|" + "---|" * len(drift["minute"])]
        for system, curve in scores["drift"].items():
            for key in ("identity", "psnr"):
                cells = ["n/a" if v is None else f"{v:.3f}" for v in curve[key]]
                lines.append(f"| {system} {key} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Definitions", "",
              "Each figure names the reference implementation whose formula it follows and where it differs. The "
              "motion groups (exp, jaw, pose) follow DualTalk's and DIM's formulas on features measured from 2-D "
              "landmarks, not on FLAME coefficients: the numbers rank systems as theirs do but do not sit in "
              "their tables.", ""]
    for k in sorted(any_system):
        f = any_system[k]
        lines.append(f"- **{k}** (n={f.n} windows, {f.dialogues} dialogues): {f.definition}. Follows: {f.follows}"
                     + (f"; differs: {f.differs}" if f.differs else ""))
    if run.failed:
        lines += ["", "## Skipped", ""] + [f"- {k}: {r}" for k, r in run.failed]
    _write(path, "\n".join(lines) + "\n")


def plot_metrics(path: Path, figures: dict[str, dict[str, Figure]]) -> None:
    """One bar chart per headline metric with a value: each system with its interval."""
    plt = pyplot()

    keys = [k for k in HEADLINE if any(k in f and f[k].value is not None for f in figures.values())]
    cols = 4
    rows = max(1, -(-len(keys) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    systems = list(figures)
    for ax, key in zip(axes.flat, keys, strict=False):
        vals = [figures[s][key].value if key in figures[s] and figures[s][key].value is not None else np.nan
                for s in systems]
        err = [[v - (figures[s][key].low if key in figures[s] and figures[s][key].low is not None else v)
                for s, v in zip(systems, vals, strict=True)],
               [(figures[s][key].high if key in figures[s] and figures[s][key].high is not None else v) - v
                for s, v in zip(systems, vals, strict=True)]]
        ax.bar(systems, vals, yerr=np.maximum(np.nan_to_num(np.array(err)), 0),
               color=["C0", "C1", "C2", "C7", "C3"][: len(systems)])
        ax.set_title(key, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_timeline(path: Path, folder: Path) -> None:
    """Per person of one window: own audio energy, mouth opening and head pitch over time, ground truth
    beside the model."""
    plt = pyplot()


    truth = load(folder / "truth.npz")[1]
    gt, (model, model_extra) = load(folder / "ground_truth.npz")[0], load(folder / "model.npz")
    synthetic = "pixel_mouth" in model_extra  # the drawn faces' exact mouth, beside the landmarks'
    fig, axes = plt.subplots(4 if synthetic else 3, 2, figsize=(12, 8 if synthetic else 6), sharex=True)
    for p, side in enumerate(("left", "right")):
        t = np.arange(len(gt[p]["mouth"])) / FPS
        axes[0, p].plot(t, truth["envelope"][p], color="k")
        axes[0, p].set_title(f"{side} person: own audio energy")
        for name, d, style in (("ground truth", gt[p], "-"), ("model", model[p], "--")):
            axes[1, p].plot(t, d["mouth"], style, label=name)
            axes[2, p].plot(t, d["pose"][:, 0], style, label=name)
        axes[1, p].set_title("mouth opening (landmarks)")
        axes[2, p].set_title("head pitch (degrees)")
        if synthetic:
            axes[3, p].plot(t, truth["synthetic_pixel_mouth"][p], "-", label="ground truth")
            axes[3, p].plot(t, model_extra["pixel_mouth"][p], "--", label="model")
            axes[3, p].set_title("mouth opening (pixels of the drawn face)")
        axes[-1, p].set_xlabel("seconds")
        axes[1, p].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_drift(path: Path, drift: dict[str, dict]) -> None:
    """Identity similarity and PSNR per minute of window time, each system a line."""
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for system, curve in drift.items():
        for ax, key in zip(axes, ("identity", "psnr"), strict=True):
            values = [np.nan if v is None else v for v in curve[key]]
            if not np.isnan(values).all():
                ax.plot(curve["minute"], values, marker="o", label=system)
    for ax, title in zip(axes, ("identity similarity to the reference", "PSNR (dB)"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("minute of the window")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_report(out: Path, scores: dict, run) -> None:
    write_json(out / "metrics.json", scores, run)
    write_markdown(out / "report.md", scores, run)
    if scores["figures"]:
        plot_metrics(out / "metrics.png", scores["figures"])
        if len(scores["drift"].get("model", {}).get("minute", [])) > 1:
            plot_drift(out / "drift.png", scores["drift"])
        first = next((f for f in windows(out) if (f / "model.npz").is_file()), None)
        if first is not None:
            plot_timeline(out / "timeline.png", first)
