"""Image payloads shared by test_image_conversion and test_robustness_tracker: a camera's Bayer mosaic of a
known scene, and compressed images whose headers claim far more pixels than their few bytes hold."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

# ROS names a Bayer pattern by its first two rows, left to right: rggb = row 0 R G, row 1 G B.
ROS_BAYER = {"rggb": ("RG", "GB"), "bggr": ("BG", "GR"), "gbrg": ("GB", "RG"), "grbg": ("GR", "BG")}


def bayer_mosaic(bgr: np.ndarray, pattern: str) -> np.ndarray:
    """The raw sensor image a camera with the ROS `pattern` takes of `bgr`: one colour sample per pixel."""
    channel = {"B": 0, "G": 1, "R": 2}
    mosaic = np.zeros(bgr.shape[:2], bgr.dtype)
    for dy, row in enumerate(ROS_BAYER[pattern]):
        for dx, colour in enumerate(row):
            mosaic[dy::2, dx::2] = bgr[dy::2, dx::2, channel[colour]]
    return mosaic


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 50000, height: int = 50000) -> bytes:
    """A 69-byte PNG whose IHDR claims width x height RGB pixels: one stored (uncompressed) IDAT block
    holding a single filter byte, then IEND."""
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(b"\0", 0)) + png_chunk(b"IEND", b""))
    assert len(data) == 69
    return data


def jpeg_claiming(width: int, height: int, progressive: bool = False) -> bytes:
    """A tiny real JPEG (8x8) whose SOF height and width fields are patched to claim width x height."""
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if progressive else []
    data = bytearray(cv2.imencode(".jpg", np.full((8, 8, 3), 90, np.uint8), params)[1].tobytes())
    sof = data.index(b"\xff\xc2" if progressive else b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)
