"""How much emotion an audio representation keeps: a linear probe on frozen features, scored by WAR and UAR.

The speech-emotion protocol (SUPERB's emotion task, EmoBox): features of each utterance are frozen, pooled
over time, and a linear classifier is trained on the train split, its weight decay and stopping epoch chosen
on a validation split, and it is scored on the test split by

    WAR = weighted average recall = accuracy,   UAR = unweighted mean of the per-class recalls.

Leave-one-session-out corpora (IEMOCAP, MSP-IMPROV) train one probe per held-out session and average.

Features (``--features``):
- ``mel``: statistics of 80-band log-mel frames (openai-whisper's front end): mean and deviation of the
  bands and of their frame-to-frame change [1, 320];
- ``egemaps``: openSMILE's eGeMAPSv02 functionals [1, 88] (the optional ``emotion`` extra);
- ``whispervq``: the checkpoint's audio tokenizer: the histogram of its codes over the utterance and the
  mean and deviation of the codes' embeddings (codebook rows) [1, K + 2 d];
- ``backbone``: the DyadGen backbone's output for the person speaking the utterance (their own track; the
  partner silent; a still face): its conditions averaged over steps and query tokens [1, D];
- ``hf:DIR``: a local transformers audio encoder (wav2vec2, HuBERT, WavLM, a Whisper encoder): every
  layer's hidden states mean-pooled over time [L, D]; the probe learns softmax weights over the layers, as
  SUPERB's weighted sum does (the weighted sum and the mean pool commute, so pooling first is exact).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import transformers
from torch import nn
from tqdm.auto import tqdm

from dyadgen.clock import SAMPLE_RATE
from dyadgen.encoders import AUDIO_TOKENIZER_DIR, load_audio_tokenizer
from dyadgen.encoders.whisper_mel import log_mel_spectrogram, mel_filters
from dyadgen.errors import UserError
from dyadgen.inference.pipeline import DyadGenPipeline, resolve_checkpoint
from dyadgen.io.audio import resample
from dyadgen.io.plots import pyplot

WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2)  # the grid chosen on validation
EPOCHS = 300
PATIENCE = 30  # epochs without a better validation UAR before stopping
VALIDATION_SHARE = 0.1  # of the training utterances, when a protocol has no validation split
MIN_SECONDS = 0.2  # shorter clips are padded with silence to this (every extractor needs a few frames)


# ---- metrics ------------------------------------------------------------------------------------------

def war_uar(truth: np.ndarray, predicted: np.ndarray, classes: int) -> tuple[float, float, np.ndarray]:
    """(WAR, UAR, per-class recall [classes], NaN for a class absent from ``truth``)."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    recall = np.full(classes, np.nan)
    for c in range(classes):
        here = truth == c
        if here.any():
            recall[c] = float((predicted[here] == c).mean())
    return float((truth == predicted).mean()), float(np.nanmean(recall)), recall


def confusion(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """counts [true class, predicted class]."""
    out = np.zeros((classes, classes), np.int64)
    np.add.at(out, (np.asarray(truth), np.asarray(predicted)), 1)
    return out


# ---- features -----------------------------------------------------------------------------------------

def clip_audio(utterance) -> np.ndarray:
    """An utterance's speech: float32 [N] at 16 kHz, only its span read from the file (first channel)."""
    try:
        rate = sf.info(str(utterance.audio)).samplerate
        a = int(round(utterance.start * rate))
        b = None if utterance.end is None else int(round(utterance.end * rate))
        data = sf.read(str(utterance.audio), start=a, stop=b, dtype="float32", always_2d=True)[0]  # [n,C]
    except (sf.LibsndfileError, RuntimeError) as err:
        raise UserError(f"{utterance.audio}: not readable audio ({str(err).splitlines()[0]})") from None
    wav = resample(data[:, 0], rate, SAMPLE_RATE).astype(np.float32)
    short = int(MIN_SECONDS * SAMPLE_RATE) - len(wav)
    return np.pad(wav, (0, short)) if short > 0 else wav


def mel_features(wav: np.ndarray) -> np.ndarray:
    mel = log_mel_spectrogram(torch.from_numpy(wav), mel_filters(80)).numpy()  # [80, frames]
    delta = np.diff(mel, axis=1) if mel.shape[1] > 1 else np.zeros_like(mel)
    return np.concatenate([mel.mean(1), mel.std(1), delta.mean(1), delta.std(1)])[None].astype(np.float32)  # [1,320]


def egemaps_features() -> Callable[[np.ndarray], np.ndarray]:
    try:
        import opensmile  # optional extra: imported only for this feature
    except ImportError:
        raise UserError("--features egemaps needs openSMILE: pip install -e '.[emotion]'") from None
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    return lambda wav: smile.process_signal(wav, SAMPLE_RATE).to_numpy(np.float32)  # [1,88]


def whispervq_features(checkpoint) -> Callable[[np.ndarray], np.ndarray]:
    """Code histogram and code-embedding statistics of the checkpoint's audio tokenizer."""
    tokenizer = load_audio_tokenizer(resolve_checkpoint(checkpoint) / AUDIO_TOKENIZER_DIR)
    if hasattr(tokenizer, "codebook"):  # the fitted tokenizer: k-means centres of normalised log-mel frames
        table = tokenizer.codebook.float()  # [K,d]
    else:  # WhisperVQ: the quantiser's codebook rows
        table = tokenizer.head.embed[0, : tokenizer.num_codes].float()  # [K,d]

    def extract(wav: np.ndarray) -> np.ndarray:
        codes = tokenizer.encode(wav).cpu()  # [T]
        if codes.numel() == 0:
            codes = torch.zeros(1, dtype=torch.long)
        histogram = torch.bincount(codes, minlength=tokenizer.num_codes)[: tokenizer.num_codes].float()
        embeddings = table[codes]  # [T,d]
        return torch.cat([histogram / histogram.sum(), embeddings.mean(0), embeddings.std(0, unbiased=False)]
                         )[None].numpy()  # [1,K+2d]

    return extract


def backbone_features(checkpoint) -> Callable[[np.ndarray], np.ndarray]:
    """The backbone's conditions for the person who speaks the utterance (partner silent, still face)."""
    pipe = DyadGenPipeline.from_pretrained(checkpoint, device="cpu", dtype="fp32")
    model, C = pipe.model.eval(), pipe.model.cfg.chunk_frames

    @torch.no_grad()
    def extract(wav: np.ndarray) -> np.ndarray:
        own = pipe.folder.tokenizer.encode(wav).cpu()  # [T]
        T = max(C, -(-len(own) // C) * C)  # whole chunks
        silent = pipe.folder.tokenizer.encode(np.zeros(T * 640, np.float32)).cpu()[:T]
        tokens = torch.stack([torch.nn.functional.pad(own, (0, T - len(own)), value=int(silent[0])), silent])  # [2,T]
        refs = pipe.references(None, None) if "latents" in pipe.folder.identities else None
        if refs is None:
            raise UserError(f"{checkpoint}: --features backbone needs the checkpoint's default identities")
        latents = refs[:, None].expand(-1, T, -1, -1, -1)  # [2,T,c,h,w]: a still face
        conditions = model.teacher_forced_conditions(tokens, latents, refs)  # [2,S,M,D]
        return conditions[0].float().mean(dim=(0, 1))[None].numpy()  # [1,D]

    return extract


def hf_features(folder: str) -> Callable[[np.ndarray], np.ndarray]:
    """Every layer's hidden states of a local transformers audio encoder, mean-pooled over time [L,D]."""
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise UserError(f"hf:{folder}: not a transformers model folder (no config.json)")
    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    whisper = config.model_type == "whisper"
    model = (transformers.WhisperModel.from_pretrained(path, local_files_only=True).encoder if whisper
             else transformers.AutoModel.from_pretrained(path, local_files_only=True)).eval()
    extractor = transformers.AutoFeatureExtractor.from_pretrained(path, local_files_only=True)

    @torch.no_grad()
    def extract(wav: np.ndarray) -> np.ndarray:
        inputs = extractor(wav, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        x = inputs["input_features"] if whisper else inputs["input_values"]
        hidden = model(x, output_hidden_states=True).hidden_states  # (L+1) x [1,T,D]
        if whisper:  # the encoder reads 30 s windows: pool only over the frames the speech covers
            frames = max(1, min(hidden[0].shape[1], int(np.ceil(len(wav) / SAMPLE_RATE * 50))))
            hidden = [h[:, :frames] for h in hidden]
        return torch.stack([h[0].mean(0) for h in hidden]).float().numpy()  # [L+1,D]

    return extract


def extractor_for(spec: str, checkpoint=None) -> Callable[[np.ndarray], np.ndarray]:
    if spec == "mel":
        return mel_features
    if spec == "egemaps":
        return egemaps_features()
    if spec == "whispervq":
        return whispervq_features(checkpoint)
    if spec == "backbone":
        return backbone_features(checkpoint)
    if spec.startswith("hf:"):
        return hf_features(spec[3:])
    raise UserError(f"--features {spec}: choose mel, egemaps, whispervq, backbone or hf:DIR")


def cached_features(corpus, spec: str, cache: Path, checkpoint=None, progress: bool = True
                    ) -> tuple[list, np.ndarray]:
    """(the utterances that gave features, features [N,L,D]), read from ``cache`` when it holds them for
    exactly these utterances, else extracted and written (write then rename). An unreadable utterance is
    listed in corpus.skipped."""
    key = hashlib.sha1(json.dumps([spec, str(checkpoint or ""), [(u.id, str(u.audio), u.start, u.end)
                                                                   for u in corpus.utterances]]).encode()).hexdigest()
    path = cache / f"{corpus.name}_{spec.replace(':', '_').replace('/', '_')[-40:]}_{key[:12]}.npz"
    if path.is_file():
        with np.load(path) as z:
            keep = set(z["ids"].tolist())
            return [u for u in corpus.utterances if u.id in keep], z["features"]
    extract = extractor_for(spec, checkpoint)
    kept, rows = [], []
    for u in tqdm(corpus.utterances, desc=f"features {spec}", unit="utterance", disable=not progress):
        try:
            rows.append(np.asarray(extract(clip_audio(u)), np.float32))
            kept.append(u)
        except (UserError, OSError, ValueError, RuntimeError) as err:  # a bad file is skipped and listed
            corpus.skipped.append((str(u.audio), str(err).splitlines()[0] if str(err) else type(err).__name__))
    if not rows:
        raise UserError(f"{corpus.name}: no utterance gave features")
    features = np.stack(rows)  # [N,L,D]
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, ids=np.array([u.id for u in kept]), features=features)
    tmp.replace(path)
    return kept, features


# ---- the probe ----------------------------------------------------------------------------------------

class LinearProbe(nn.Module):
    """Softmax weights over layers [L], then one linear layer: [N,L,D] -> logits [N,C]."""

    def __init__(self, layers: int, dim: int, classes: int) -> None:
        super().__init__()
        self.layer_logits = nn.Parameter(torch.zeros(layers))
        self.linear = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.einsum("l,nld->nd", self.layer_logits.softmax(0), x)  # [N,D]
        return self.linear(pooled)


@dataclass
class FoldResult:
    name: str  # "test" or the held-out session
    war: float
    uar: float
    recall: list[float]
    confusion: list[list[int]]
    weight_decay: float
    epochs: int
    n_train: int
    n_test: int


def _fit(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, classes: int, weight_decay: float,
         seed: int) -> tuple[LinearProbe, float, int]:
    """Full-batch Adam on standardised features; the epoch with the best validation UAR is kept."""
    torch.manual_seed(seed)
    probe = LinearProbe(x.shape[1], x.shape[2], classes)
    opt = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=weight_decay)
    counts = np.bincount(y, minlength=classes).astype(np.float32)
    weights = torch.from_numpy(np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / classes, 0.0)).float()
    xt, yt, xvt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(xv)
    best, best_state, best_epoch, waited = -1.0, None, 0, 0
    for epoch in range(1, EPOCHS + 1):
        probe.train()
        opt.zero_grad()
        nn.functional.cross_entropy(probe(xt), yt, weight=weights).backward()  # class-balanced, as UAR counts
        opt.step()
        with torch.no_grad():
            uar = war_uar(yv, probe.eval()(xvt).argmax(1).numpy(), classes)[1]
        if uar > best:
            best, best_state, best_epoch, waited = uar, {k: v.clone() for k, v in probe.state_dict().items()}, epoch, 0
        else:
            waited += 1
            if waited >= PATIENCE:
                break
    probe.load_state_dict(best_state)
    return probe.eval(), best, best_epoch


def run_fold(name: str, x: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, test: np.ndarray,
             classes: int, seed: int = 0) -> FoldResult:
    """Standardise with the training features, choose the weight decay on validation, score the test set."""
    mean = x[train].mean(0, keepdims=True)
    std = x[train].std(0, keepdims=True) + 1e-6
    z = ((x - mean) / std).astype(np.float32)
    fits = [(_fit(z[train], y[train], z[val], y[val], classes, wd, seed), wd) for wd in WEIGHT_DECAYS]
    (probe, _, epochs), wd = max(fits, key=lambda f: f[0][1])
    with torch.no_grad():
        predicted = probe(torch.from_numpy(z[test])).argmax(1).numpy()
    war, uar, recall = war_uar(y[test], predicted, classes)
    return FoldResult(name, war, uar, [None if np.isnan(r) else float(r) for r in recall],
                      confusion(y[test], predicted, classes).tolist(), wd, epochs, int(train.size), int(test.size))


def _validation(train: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(train)
    n = max(1, int(round(VALIDATION_SHARE * len(train))))
    return np.sort(shuffled[n:]), np.sort(shuffled[:n])


@dataclass
class ProbeResult:
    dataset: str
    features: str
    classes: tuple[str, ...]
    protocol: str
    war: float
    uar: float
    recall: list[float | None]
    folds: list[FoldResult] = field(default_factory=list)
    utterances: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def probe(corpus, utterances: list, features: np.ndarray, spec: str, seed: int = 0) -> ProbeResult:
    """The protocol of ``corpus``: its splits, or leave-one-session-out over its groups."""
    index = {c: i for i, c in enumerate(corpus.classes)}
    y = np.array([index[u.label] for u in utterances], np.int64)
    groups = np.array([u.group for u in utterances])
    C = len(corpus.classes)
    folds = []
    if corpus.protocol == "split":
        train, test = np.flatnonzero(groups == "train"), np.flatnonzero(groups == "test")
        val = np.flatnonzero(groups == "val")
        if train.size == 0 or test.size == 0:
            raise UserError(f"{corpus.name}: the probe needs train and test utterances "
                            f"(found {train.size} train, {test.size} test)")
        if val.size == 0:
            train, val = _validation(train, seed)
        folds.append(run_fold("test", features, y, train, val, test, C, seed))
    else:
        sessions = sorted(set(groups.tolist()))
        if len(sessions) < 2:
            raise UserError(f"{corpus.name}: leave-one-session-out needs two sessions or more (found {sessions})")
        for session in sessions:
            train, val = _validation(np.flatnonzero(groups != session), seed)
            folds.append(run_fold(session, features, y, train, val, np.flatnonzero(groups == session), C, seed))
    recall = np.nanmean(np.array([[np.nan if r is None else r for r in f.recall] for f in folds]), axis=0)
    return ProbeResult(corpus.name, spec, tuple(corpus.classes), corpus.protocol,
                       float(np.mean([f.war for f in folds])), float(np.mean([f.uar for f in folds])),
                       [None if np.isnan(r) else float(r) for r in recall], folds, len(utterances),
                       list(corpus.skipped))


def plot_confusion(path, result: ProbeResult) -> None:
    """The test confusion matrix summed over folds, rows normalised (recall on the diagonal)."""
    plt = pyplot()

    counts = np.sum([np.array(f.confusion) for f in result.folds], axis=0)
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    n = len(result.classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * n, 1 + 0.5 * n))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), result.classes, rotation=45, ha="right")
    ax.set_yticks(range(n), result.classes)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{result.dataset}, {result.features}: WAR {result.war:.3f}, UAR {result.uar:.3f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
