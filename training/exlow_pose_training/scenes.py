"""The project's real scenes (training/configs/scenes.yaml): which clip, which role, which licence.

Role `test` marks an unseen scene: nothing of it may reach training or model selection. Everything that
reports accuracy names its scenes through this registry, with the unseen ones as the headline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from exlow_pose_ros.core.assets import assets_dir

REPO = Path(__file__).resolve().parents[2]
DEFAULT_REGISTRY = REPO / "training" / "configs" / "scenes.yaml"
ROLES = ("train", "val", "test")


@dataclass(frozen=True)
class SceneClip:
    name: str                      # the scene; clips of one place share it
    video: Path
    role: str
    teacher_imgsz: int
    licence: str
    shows: str = ""
    frames: tuple[int, int | None] = (0, None)  # [first, end) of the clip
    background: bool = False       # fixed camera: its plates may back synthetic renders (training scenes only)

    @property
    def clip_name(self) -> str:
        end = "" if self.frames[1] is None else str(self.frames[1])
        span = "" if self.frames == (0, None) else f"[{self.frames[0]}:{end}]"
        return f"{self.video.name}{span}"


@dataclass(frozen=True)
class SceneRegistry:
    clips: list[SceneClip]
    test_heights: list[float]
    train_heights: list[float]
    block_frames: int
    path: Path = field(default=DEFAULT_REGISTRY)

    def by_role(self, role: str) -> list[SceneClip]:
        return [clip for clip in self.clips if clip.role == role]

    def background_videos(self) -> list[Path]:
        """Fixed-camera training videos whose people-free plates back synthetic renders; never a test scene."""
        return list(dict.fromkeys(clip.video for clip in self.clips if clip.background and clip.role == "train"))

    def scene_names(self, role: str) -> list[str]:
        return list(dict.fromkeys(clip.name for clip in self.by_role(role)))


def shared_data_dir() -> Path:
    return Path(os.environ.get("EXLOW_POSE_SHARED_DATA", REPO.parent / "shared" / "data"))


def resolve_video(reference: str) -> Path:
    """`assets:PATH` and `shared:PATH` name the set-up's assets and ../shared/data; anything else is a path."""
    prefix, _, rest = reference.partition(":")
    if prefix == "assets" and rest:
        return assets_dir() / rest
    if prefix == "shared" and rest:
        return shared_data_dir() / rest
    return Path(reference)


def load_registry(path: Path = DEFAULT_REGISTRY) -> SceneRegistry:
    values = yaml.safe_load(Path(path).read_text())
    clips = []
    roles: dict[str, str] = {}
    for entry in values["scenes"]:
        role = entry["role"]
        if role not in ROLES:
            raise ValueError(f"{path}: scene {entry['name']!r} has role {role!r}, not one of {ROLES}")
        if roles.setdefault(entry["name"], role) != role:
            raise ValueError(f"{path}: clips of scene {entry['name']!r} have two roles; a scene has one")
        first, end = entry.get("frames", [0, None])
        if entry.get("background") and role != "train":
            raise ValueError(f"{path}: scene {entry['name']!r} is {role}; only training scenes may give backgrounds")
        clips.append(SceneClip(entry["name"], resolve_video(entry["video"]), role, int(entry["teacher_imgsz"]),
                               entry["licence"], entry.get("shows", ""), (int(first), end),
                               bool(entry.get("background", False))))
    test_names = {c.name for c in clips if c.role == "test"}
    if test_names & {c.name for c in clips if c.role != "test"}:
        raise ValueError(f"{path}: a test scene also appears with another role")
    return SceneRegistry(clips, [float(h) for h in values["test_heights"]],
                         [float(h) for h in values["train_heights"]], int(values["block_frames"]), Path(path))


def video_licence(video: Path, registry: Path = DEFAULT_REGISTRY) -> str:
    """The licence the registry names for a video file (matched by file name)."""
    for clip in load_registry(registry).clips:
        if clip.video.name == Path(video).name:
            return clip.licence
    return "see source"
