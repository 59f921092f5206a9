"""`dyadgen video-stats` on a side-by-side video of two real faces (scikit-image's astronaut, and her mirror
image): the person whose framing drifts has the larger jitter, the one who blinks has blinks, both are
found and segmented, and a broken video is skipped and listed."""

from __future__ import annotations

import json

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("dlib")
skimage_data = pytest.importorskip("skimage.data")

from dyadgen.eval import face, video_stats  # noqa: E402

HEAD = (slice(20, 276), slice(110, 334))  # head and shoulders, 256 x 224


@pytest.fixture(scope="module")
def dialogue(tmp_path_factory):
    from dyadgen.io.video import VideoWriter

    image = skimage_data.astronaut()
    lm = face.landmarks(image, face.detect(image))
    closed = image.copy()
    for eye in (face.LEFT_EYE, face.RIGHT_EYE):  # the lids shut: lid skin over the eye, lashes along its lower line
        p = lm[eye]
        x0, y0 = p.min(0).astype(int) - 2
        x1, y1 = p.max(0).astype(int) + 2
        closed[y0:y1, x0:x1] = image[y0 - 6: y0 - 5, x0:x1]
        cv2.polylines(closed, [np.round(p[[0, 5, 4, 3]]).astype(np.int32)], False, (60, 35, 30), 2)
    root = tmp_path_factory.mktemp("videos")
    path = root / "dialogue.mp4"
    blinks_at = {20, 21, 22, 60, 61, 62}
    with VideoWriter(path, width=448, height=256) as writer:
        for t in range(75):  # 3 s
            drift = int(8 * np.sin(t / 4))  # the left person's framing sways
            left = np.roll(image, drift, axis=1)[HEAD]
            right = (closed if t in blinks_at else image)[HEAD][:, ::-1]
            writer.write(np.concatenate([left, right], axis=1))
    (root / "broken.mp4").write_bytes(b"not a video")
    return root


def test_video_statistics_of_both_people(dialogue, tmp_path):
    left, right = video_stats.video_stats(dialogue / "dialogue.mp4", seconds=0)
    for s in (left, right):
        assert s.values["face_found"] == 1.0 and s.seconds == pytest.approx(3.0)
        assert 0.2 < s.values["occupancy"] < 0.9  # a head and shoulders fill a good part of the crop
        assert s.segmented == 3 and s.face_heat.sum() == 75 and s.pose_heat.sum() > 0
    assert left.values["face_jitter"] > 3 * right.values["face_jitter"]  # the sway shows as framing jitter
    assert right.values["blink_rate"] == pytest.approx(2 / (3 / 60))  # two blinks in 3 s
    assert left.values["blink_rate"] == 0
    assert left.values["face_x"] == pytest.approx(right.values["face_x"], abs=0.1)  # mirrored, both near the middle


def test_the_command_writes_json_and_heatmaps_and_skips_a_broken_video(dialogue, tmp_path, capsys):
    from dyadgen.cli import main

    out = tmp_path / "stats"
    assert main(["video-stats", str(dialogue), "--out", str(out), "--seconds", "2"]) == 0
    body = json.loads((out / "video_stats.json").read_text())
    assert set(body["people"]) == {"left", "right"} and body["seconds"]["left"] == pytest.approx(2.0)
    assert body["people"]["left"]["occupancy"] > 0.2
    assert len(body["skipped"]) == 1 and "broken.mp4" in body["skipped"][0]["video"]
    assert np.array(body["heatmaps"]["right"]["head_pose_yaw_pitch"]).sum() == 50
    assert (out / "video_stats.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "| left |" in printed and "skipped" in printed


def test_a_socioemodialog_root_gives_raw_videos_and_clips_only_where_the_raw_video_is_missing(tmp_path):
    from dyadgen.commands.video_stats import find_videos

    for name in ("a.mp4", "a/video_segments/0.mp4", "a/video_segments/1.mp4", "b/video_segments/0.mp4",
                 "b/b_left.wav"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in find_videos([str(tmp_path)])]
    assert found == ["a.mp4", "b/video_segments/0.mp4"]


def test_segmentation_of_a_tight_crop_or_a_box_off_the_frame_does_not_fail():
    # the crop rule's framing: the shoulders reach both sides, so no background can be seeded
    for size, box in (((128, 112), face.prior_box((128, 112))), ((96, 96), (-40, -40, 10, 10))):
        mask = video_stats.person_mask(np.zeros((*size, 3), np.uint8), box)
        assert mask.shape == size and mask.dtype == bool
