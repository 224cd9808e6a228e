"""The pose node's source-image store: an image stays while a frame may still be drawn on it, and no longer."""

from __future__ import annotations

from exlow_pose_ros.core.source_images import SourceImages


def test_a_camera_faster_than_the_tracker_keeps_the_images_of_waiting_frames_and_drops_the_skipped_ones():
    """36 camera images per tracked frame; in centre mode each tracked frame is drawn two tracked frames later.
    Every tracked frame must find its image then, and the store must not grow with the skipped images."""
    images: SourceImages[int, str] = SourceImages(capacity=90)
    waiting: list[int] = []
    drawn, sizes = {}, []
    for tracked in range(0, 36 * 10, 36):
        for stamp in range(tracked, tracked + 36):  # the camera runs ahead of the tracker
            images.add(stamp, f"image {stamp}")
        waiting.append(tracked)
        while len(waiting) > 2:  # centre mode: the frame two tracked frames back is complete
            frame = waiting.pop(0)
            drawn[frame] = images.get(frame)
        images.release(tracked, set(waiting))
        sizes.append(len(images))
    assert drawn == {frame: f"image {frame}" for frame in range(0, 36 * 8, 36)}
    assert max(sizes) <= 2 + 35, sizes  # the waiting frames' images and those the tracker has not reached
    assert images.evicted_unused == 0


def test_images_that_came_after_the_tracked_one_stay_whatever_their_stamps_and_capacity_bounds_the_rest():
    images: SourceImages[int, str] = SourceImages(capacity=5)
    for stamp in (10, 11, 12, 5):  # 5: a restarted stream's first image (a looped bag), after 12
        images.add(stamp, str(stamp))
    images.release(11, waiting={10})
    assert [images.get(k) for k in (10, 11, 12, 5)] == ["10", None, "12", "5"]
    images.release(99, waiting=set())  # the tracked frame's image has not come (or was lost): nothing goes
    assert len(images) == 3
    images.add(12, "12 again")  # a repeated stamp is the newest image
    for stamp in (6, 7, 8):
        images.add(stamp, str(stamp))
    assert len(images) == 5 and images.evicted_unused == 1
    assert images.get(10) is None and images.get(12) == "12 again"
