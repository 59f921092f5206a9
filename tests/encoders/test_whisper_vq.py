"""WhisperVQ tokenizer: the same tokens as WhisperSpeech's own code (golden fixture made by
scripts/make_whispervq_golden.py), 25 tokens per second across 30 s windows, safe checkpoint loading."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dyadgen.config import AudioTokenizerConfig
from dyadgen.config.presets import preset
from dyadgen.encoders import load_audio_tokenizer
from dyadgen.encoders.whisper_vq import WhisperVQTokenizer, count_parameters, mel_filters
from dyadgen.errors import UserError

FX = Path(__file__).resolve().parents[1] / "fixtures" / "whispervq"
GOLDEN = json.loads((FX / "golden.json").read_text())


def voice(seconds, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * 16000))) / 16000
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    env = (np.sin(2 * np.pi * 3 * t + rng.uniform(0, 6)) > 0).astype(np.float32)
    return (0.3 * env * np.sin(2 * np.pi * np.cumsum(f0) / 16000) + 0.01 * rng.standard_normal(t.size)).astype(
        np.float32)


@pytest.fixture(scope="module")
def audio():
    wav, sr = sf.read(str(FX / GOLDEN["audio"]), dtype="float32")
    assert sr == 16000
    return wav


@pytest.fixture(scope="module")
def tok():
    return load_audio_tokenizer(FX / "tokenizer")  # a save_pretrained folder: kind from its tokenizer.json


def test_tokens_equal_whisperspeech_golden(tok, audio):
    assert isinstance(tok, WhisperVQTokenizer)
    for name, case in GOLDEN["cases"].items():
        ours = tok.encode(audio[case["start"]: case["stop"]])
        assert ours.dtype == torch.long
        assert ours.tolist() == case["tokens"], name
    assert len(GOLDEN["cases"]["full"]["tokens"]) == 787  # one full 30 s window + a 1.5 s window


def test_mel_filters_are_openai_whispers_bit_for_bit():
    for n, digest in GOLDEN["mel_filters_sha256"].items():
        assert hashlib.sha256(mel_filters(int(n)).numpy().tobytes()).hexdigest() == digest


def test_25_tokens_per_second_across_windows(tok):
    assert tok.encode(voice(10.0)).shape == (250,)
    assert tok.encode(voice(37.3)).shape == (932,)  # 750 from the first 30 s window + 182
    assert tok.encode(voice(30.0)).shape == (750,)
    assert tok.encode(np.zeros(639, np.float32)).shape == (0,)
    assert tok.encode(np.zeros(480_000 + 639, np.float32)).shape == (750,)  # a tail shorter than a frame adds none
    assert tok.encode(np.zeros(640, np.float32)).shape == (1,)


def test_deterministic_and_batch_equals_one_by_one(tok, audio):
    wavs = [audio[:80_000], voice(37.3, 1), audio[12_345:300_000], np.zeros(100, np.float32)]
    one = [tok.encode(w) for w in wavs]
    small = WhisperVQTokenizer.from_pretrained(FX / "tokenizer", batch_size=2)  # batches mix windows of two wavs
    for batched in (tok.encode_batch(wavs), small.encode_batch(wavs)):
        assert all(torch.equal(a, b) for a, b in zip(one, batched, strict=True))
    assert torch.equal(one[1], tok.encode(torch.from_numpy(wavs[1])))
    assert len(set(one[1].tolist())) > 5


def test_num_codes_and_pad_id(tok, audio):
    assert tok.kind == "whisper_vq" and tok.num_codes == 512 and tok.pad_id == 512
    assert int(tok.encode(audio).max()) <= tok.pad_id


def test_loads_whisperspeech_model_file_with_weights_only(monkeypatch, audio):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    tok = load_audio_tokenizer(AudioTokenizerConfig(kind="whisper_vq", name_or_path=str(FX / "tiny-vq.model"),
                                                    whisper_name_or_path=str(FX / "whisper-tiny-random")))
    assert calls and all(c.get("weights_only") is True and c.get("map_location") == "cpu" for c in calls)
    case = GOLDEN["cases"]["head"]
    assert tok.encode(audio[case["start"]: case["stop"]]).tolist() == case["tokens"]


class NotWeights:
    pass


def test_pickled_objects_are_refused(tmp_path):
    bad = tmp_path / "evil.model"
    torch.save({"config": {}, "state_dict": {}, "obj": NotWeights()}, bad)
    with pytest.raises(UserError, match="weights_only"):
        load_audio_tokenizer(bad)


def test_save_pretrained_round_trip_without_pickles(tok, audio, tmp_path):
    tok.save_pretrained(tmp_path / "tok")
    files = sorted(p.name for p in (tmp_path / "tok").rglob("*") if p.is_file())
    assert all(f.endswith((".json", ".safetensors")) for f in files), files
    again = load_audio_tokenizer(tmp_path / "tok")
    assert torch.equal(again.encode(audio[:100_000]), tok.encode(audio[:100_000]))


def test_missing_whisper_weights_are_an_error_not_a_random_init(tmp_path):
    shutil.copytree(FX / "tokenizer", tmp_path / "tok")
    (tmp_path / "tok" / "whisper" / "model.safetensors").unlink()
    with pytest.raises(UserError, match="model.safetensors"):
        load_audio_tokenizer(tmp_path / "tok")


def test_unreachable_hub_name_says_which_file_to_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = "collabora/whisperspeech:whisper-vq-stoks-medium-en+pl.model"
    with pytest.raises(UserError) as err:
        load_audio_tokenizer(AudioTokenizerConfig(kind="whisper_vq", name_or_path=name))
    msg = str(err.value)
    assert "\n" not in msg
    assert "https://huggingface.co/collabora/whisperspeech/blob/main/whisper-vq-stoks-medium-en+pl.model" in msg
    with pytest.raises(UserError, match="whisper-vq-stoks-medium-en\\+pl.model"):
        load_audio_tokenizer(preset("real").audio_tokenizer)


def test_real_parameter_count():
    from dyadgen.bench.flops import audio_tokenizer_params

    # openai/whisper-medium's encoder (307,216,384 with its 1500x1024 positions) + mlp_ln, mlp 1024->4096->1024,
    # project_in 1024->64 and the 513x64 codebook (8,494,208)
    assert count_parameters() == 315_710_592
    assert audio_tokenizer_params(preset("real")) == 315_710_592
