"""Virtual pinhole cameras of the kinds that watch people from far away: surveillance cameras
(high, pitched down) and robots (low, nearly level), at any yaw around the person."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Heights (m), horizontal distances to the person (m) and pitch jitter (deg) per camera profile.
PROFILES: dict[str, dict[str, tuple[float, float]]] = {
    "surveillance": {"height": (2.5, 8.0), "distance": (4.0, 30.0), "pitch_jitter": (-4.0, 4.0)},
    "robot": {"height": (0.4, 1.6), "distance": (2.0, 15.0), "pitch_jitter": (-6.0, 6.0)},
}
IMAGE_SIZES = ((640, 480), (1280, 720), (1920, 1080), (768, 576))
HORIZONTAL_FOV_DEG = (40.0, 95.0)


@dataclass(frozen=True)
class PinholeCamera:
    """Camera frame: x right, y down, z forward (REP 103 optical). x_cam = rotation @ x_world + translation."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    rotation: np.ndarray     # (3, 3) world -> camera
    translation: np.ndarray  # (3,)

    @property
    def position(self) -> np.ndarray:
        """Camera centre in world coordinates."""
        return -self.rotation.T @ self.translation


def look_at(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World -> camera rotation of a level (no roll) camera at `position` looking at `target`; world z up."""
    forward = np.asarray(target, float) - np.asarray(position, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    if np.linalg.norm(right) < 1e-6:  # looking straight down or up: any right vector will do
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward])


def project(camera: PinholeCamera, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points (..., 3) -> pixel coordinates (..., 2) and depth along the optical axis (...)."""
    cam = np.asarray(points, float) @ camera.rotation.T + camera.translation
    depth = cam[..., 2]
    safe = np.where(depth > 1e-6, depth, np.nan)  # points behind the camera project to NaN
    u = camera.fx * cam[..., 0] / safe + camera.cx
    v = camera.fy * cam[..., 1] / safe + camera.cy
    return np.stack([u, v], axis=-1), depth


def sample_camera(rng: np.random.Generator, target: np.ndarray, profile: str | None = None) -> PinholeCamera:
    """A random camera of `profile` (random if None) looking at `target` (world, m) from any yaw."""
    profile = profile or str(rng.choice(list(PROFILES)))
    ranges = PROFILES[profile]
    width, height = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
    fov = np.deg2rad(rng.uniform(*HORIZONTAL_FOV_DEG))
    focal = width / 2 / np.tan(fov / 2)
    yaw = rng.uniform(0, 2 * np.pi)
    distance = rng.uniform(*ranges["distance"])
    position = np.asarray(target, float) + np.array([distance * np.cos(yaw), distance * np.sin(yaw), 0.0])
    position[2] = rng.uniform(*ranges["height"])
    # Aim at the target, then tilt a little so the person is not always at the image centre.
    rise = np.tan(np.deg2rad(rng.uniform(*ranges["pitch_jitter"]))) * distance
    aim = np.asarray(target, float) + np.array([0.0, 0.0, rise])
    rotation = look_at(position, aim)
    return PinholeCamera(width=int(width), height=int(height), fx=float(focal), fy=float(focal),
                         cx=width / 2.0, cy=height / 2.0, rotation=rotation, translation=-rotation @ position)
