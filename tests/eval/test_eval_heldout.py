"""The held-out windows: the training split rule picks them, and each person's reference frame comes from
outside the scored window - also from a folder that holds only the published turn clips."""

from __future__ import annotations

import numpy as np
import pytest

from dyadgen.clock import FPS
from dyadgen.data.socioemodialog import index_dataset
from dyadgen.data.splits import Splitter
from dyadgen.eval.heldout import REFERENCE_GAP, held_out_clips, read_truth


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from dyadgen.data.synthetic import synthesize

    root = tmp_path_factory.mktemp("heldout")
    synthesize(root, 2, seed=13, use_espeak=False, progress=False)
    return root


def test_windows_follow_the_split_rule(corpus):
    videos = index_dataset(corpus).videos
    splitter = Splitter(val_fraction=0.0, test_fraction=0.5)
    chosen = {w.video.name for w in held_out_clips(videos, splitter, "test", 4.0)}
    assert chosen == {v.name for v in videos if splitter(v.name, v.dialogue_id) == "test"}
    everything = held_out_clips(videos, splitter, "all", 4.0, max_clips=3)
    assert len(everything) == 3 and len({w.video.name for w in everything}) == 2  # spread over the videos


def test_references_come_from_outside_the_window(corpus):
    window = held_out_clips(index_dataset(corpus).videos, Splitter(), "all", 4.0)[0]
    truth = read_truth(window, (128, 112))
    assert truth.frames.shape == (2, 100, 128, 112, 3) and truth.audio.shape == (2, 100 * 640)
    for frame in truth.reference_frames:
        assert frame < window.first - REFERENCE_GAP or frame >= window.first + window.frames + REFERENCE_GAP
    assert not any((truth.references[p] == truth.frames[p]).all(axis=(1, 2, 3)).any() for p in range(2))
    assert truth.synthetic is not None and truth.synthetic["mouth"].shape == (2, 100)


def test_a_folder_with_only_turn_clips_is_evaluated_from_its_clips(corpus, tmp_path):
    import shutil

    video = index_dataset(corpus).videos[0]
    folder = tmp_path / video.name
    shutil.copytree(video.folder, folder)
    for wav in folder.glob("*.wav"):  # only the published clips and wav segments remain
        wav.unlink()
    clips_only = index_dataset(tmp_path).videos[0]
    assert clips_only.raw_video is None and clips_only.clips
    windows = held_out_clips([clips_only], Splitter(), "all", 2.0)
    assert windows and all(w.clip is not None for w in windows)
    window = max(windows, key=lambda w: w.first)  # a clip after others, so a reference exists elsewhere
    truth = read_truth(window, (128, 112))
    assert truth.frames.shape[:2] == (2, 2 * FPS)
    assert np.abs(truth.audio).max() > 0  # both people's audio from the clip's stereo track
    for frame in truth.reference_frames:
        assert not window.first - REFERENCE_GAP <= frame < window.first + window.frames + REFERENCE_GAP
