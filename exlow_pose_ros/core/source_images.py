"""Source images kept until the frame they show is drawn (the pose node's annotated image)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)  # a frame's stamp key
I = TypeVar("I")  # noqa: E741 - the image message

DEFAULT_CAPACITY = 90  # 3 s of a 30 fps camera: a bound on memory whatever the stamps do


class SourceImages(Generic[K, I]):
    """Images by stamp, kept while a frame may still ask for them.

    Why by need and not by count: in centre mode a frame is drawn two tracker frames after it came in, and a
    camera faster than the tracker sends many images in between, most of which the tracker skipped. An image
    that came in before the newest tracked frame's and is not waiting to be drawn will never be asked for; one
    that came in after it may still be tracked. `capacity` bounds memory when images are lost or stamps
    misbehave, oldest out."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._images: OrderedDict[K, I] = OrderedDict()
        self.evicted_unused = 0  # images dropped by the capacity bound, not because they were done with

    def __len__(self) -> int:
        return len(self._images)

    def add(self, key: K, image: I) -> None:
        self._images.pop(key, None)  # a repeated stamp (a looped bag) counts as the newest image
        self._images[key] = image
        while len(self._images) > self.capacity:
            self._images.popitem(last=False)
            self.evicted_unused += 1

    def get(self, key: K) -> I | None:
        return self._images.get(key)

    def release(self, tracked: K, waiting: Container[K]) -> None:
        """The tracker's frame `tracked` has been handled: drop the images no frame will ask for, those that came
        in up to its own image (the tracker skipped them) and are not `waiting` to be drawn. By arrival, not by
        stamp: a restarted stream's first image has an older stamp and is still to come. Without its image yet
        (it travels slower than the persons) nothing is dropped now."""
        if tracked not in self._images:
            return
        done = []
        for key in self._images:
            if key not in waiting:
                done.append(key)
            if key == tracked:
                break
        for key in done:
            del self._images[key]
