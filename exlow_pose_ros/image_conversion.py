"""sensor_msgs/Image <-> numpy, honouring `encoding`, `step` (row padding) and `is_bigendian`.

Where cv_bridge imports (a robot with apt ROS 2), it does the decoding; elsewhere this module's
own strided view over `data` does. Both accept the same encodings and give the same arrays:
(height, width) for one channel, (height, width, 3) for bgr8/rgb8, in native byte order.
Anything else is refused with an ImageConversionError that names the offending value.
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

try:  # ROS 2's cv_bridge comes with an apt ROS install; PyPI has none (its cv-bridge is ROS 1's).
    from cv_bridge import CvBridge, CvBridgeError
except ImportError:
    CvBridge = None
    CvBridgeError = ()


@dataclass(frozen=True)
class PixelFormat:
    dtype: np.dtype
    channels: int

    @property
    def bytes_per_pixel(self) -> int:
        return self.dtype.itemsize * self.channels


PIXEL_FORMATS: dict[str, PixelFormat] = {
    "bgr8": PixelFormat(np.dtype(np.uint8), 3),
    "rgb8": PixelFormat(np.dtype(np.uint8), 3),
    "mono8": PixelFormat(np.dtype(np.uint8), 1),
    "mono16": PixelFormat(np.dtype(np.uint16), 1),
    "16UC1": PixelFormat(np.dtype(np.uint16), 1),
    "32FC1": PixelFormat(np.dtype(np.float32), 1),
}


class ImageConversionError(ValueError):
    """An image message or array that cannot be converted; the message says which value is wrong and
    `kind` the class of fault (nodes rate-limit their reports per kind)."""

    def __init__(self, text: str, kind: str = "image") -> None:
        super().__init__(text)
        self.kind = kind


_cv_bridge = CvBridge() if CvBridge is not None else None


def pixel_format(encoding: str) -> PixelFormat:
    try:
        return PIXEL_FORMATS[encoding]
    except KeyError:
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(PIXEL_FORMATS)}", "image encoding"
        ) from None


def _check_layout(msg: Image, fmt: PixelFormat) -> None:
    row_bytes = msg.width * fmt.bytes_per_pixel
    if msg.step < row_bytes:
        raise ImageConversionError(
            f"step {msg.step} is smaller than width {msg.width} x {fmt.bytes_per_pixel} bytes per "
            f"pixel = {row_bytes} for encoding {msg.encoding!r}", "image layout"
        )
    # The last row may omit its padding; every byte of every pixel must be there.
    needed = (msg.height - 1) * msg.step + row_bytes if msg.height else 0
    if len(msg.data) < needed:
        raise ImageConversionError(
            f"data holds {len(msg.data)} bytes but a {msg.width}x{msg.height} {msg.encoding!r} image "
            f"with step {msg.step} needs {needed}", "image layout"
        )


def _own_image_to_numpy(msg: Image, fmt: PixelFormat) -> np.ndarray:
    wire_dtype = fmt.dtype.newbyteorder(">" if msg.is_bigendian else "<")
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    view = np.ndarray(
        shape=(msg.height, msg.width, fmt.channels),
        dtype=wire_dtype,
        buffer=buffer,
        strides=(msg.step, fmt.bytes_per_pixel, fmt.dtype.itemsize),
    )
    if fmt.channels == 1:
        view = view[:, :, 0]
    # One copy: native byte order, contiguous, and no longer aliasing the message.
    return np.array(view, dtype=fmt.dtype.newbyteorder("="), order="C", copy=True)


def image_to_numpy(msg: Image) -> np.ndarray:
    """Decode `msg` into a new array of shape (height, width) or (height, width, 3)."""
    fmt = pixel_format(msg.encoding)
    _check_layout(msg, fmt)
    if msg.height == 0 or msg.width == 0:
        shape = (msg.height, msg.width) if fmt.channels == 1 else (msg.height, msg.width, fmt.channels)
        return np.zeros(shape, dtype=fmt.dtype)
    if _cv_bridge is None:
        return _own_image_to_numpy(msg, fmt)
    try:
        decoded = _cv_bridge.imgmsg_to_cv2(msg, desired_encoding="passthrough")
        return np.array(decoded, dtype=fmt.dtype.newbyteorder("="), order="C", copy=True)
    except (CvBridgeError, TypeError, ValueError) as error:
        raise ImageConversionError(f"cv_bridge could not decode {msg.encoding!r} image: {error}",
                                   "image layout") from error


def to_bgr8(pixels: np.ndarray, encoding: str, purpose: str = "the detector") -> np.ndarray:
    """A decoded bgr8, rgb8 or mono8 image as a (height, width, 3) BGR array; anything else, or an image
    without pixels, raises ImageConversionError."""
    if pixels.size == 0:
        raise ImageConversionError(f"image of {pixels.shape[1]}x{pixels.shape[0]} pixels: nothing to use",
                                   "empty image")
    if encoding == "bgr8":
        return pixels
    if encoding == "rgb8":
        return np.ascontiguousarray(pixels[..., ::-1])
    if encoding == "mono8":
        return np.repeat(pixels[..., None], 3, axis=2)
    raise ImageConversionError(f"{purpose} needs a bgr8, rgb8 or mono8 image, not {encoding!r}", "image encoding")


def decode_compressed(data: bytes | array | list[int], image_format: str) -> np.ndarray:
    """A sensor_msgs/CompressedImage's bytes as a BGR array; ImageConversionError when they do not decode."""
    import cv2

    buffer = np.frombuffer(bytes(data), np.uint8)
    # imdecode asserts on an empty buffer instead of returning None.
    decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if decoded is None:
        raise ImageConversionError(f"compressed image ({image_format!r}, {buffer.size} bytes) does not decode",
                                   "undecodable")
    return decoded


def numpy_to_image(pixels: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """Encode `pixels` (dtype and channel count matching `encoding`) as an unpadded Image."""
    fmt = pixel_format(encoding)
    expected_ndim = 2 if fmt.channels == 1 else 3
    if pixels.ndim != expected_ndim or (fmt.channels > 1 and pixels.shape[2] != fmt.channels):
        raise ImageConversionError(
            f"array of shape {pixels.shape} does not fit encoding {encoding!r} "
            f"({fmt.channels} channel{'s' if fmt.channels > 1 else ''})"
        )
    if pixels.dtype.newbyteorder("=") != fmt.dtype:
        raise ImageConversionError(f"array dtype {pixels.dtype} does not fit encoding {encoding!r} ({fmt.dtype})")
    native = np.ascontiguousarray(pixels, dtype=fmt.dtype)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(native.shape[0]), int(native.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = sys.byteorder == "big"
    msg.step = msg.width * fmt.bytes_per_pixel
    # array('B') is assigned without per-element checks; bytes would be slow with field checks on.
    data = array("B")
    data.frombytes(native.tobytes())
    msg.data = data
    return msg
