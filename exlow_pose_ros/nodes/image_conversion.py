"""sensor_msgs/Image <-> numpy, honouring `encoding`, `step` (row padding) and `is_bigendian`.

Where cv_bridge imports (a robot with apt ROS 2), it does the decoding (but for encodings an older
cv_bridge lacks); elsewhere this module's own strided view over `data` does. Both accept the same
encodings and give the same arrays: (height, width) for one channel (mono, depth, Bayer mosaics),
(height, width, channels) otherwise (3 for bgr8/rgb8, 4 for bgra8/rgba8, 2 bytes per pixel for the
packed YUV 4:2:2 formats), in native byte order. `to_bgr8` turns any camera encoding among them into
BGR for a detector; compressed images are size-checked from their header before they are decoded.
Anything else is refused with an ImageConversionError that names the offending value.
"""

from __future__ import annotations

import io
import sys
import warnings
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


BAYER_PATTERNS = ("rggb", "bggr", "gbrg", "grbg")

PIXEL_FORMATS: dict[str, PixelFormat] = {
    "bgr8": PixelFormat(np.dtype(np.uint8), 3),
    "rgb8": PixelFormat(np.dtype(np.uint8), 3),
    "bgra8": PixelFormat(np.dtype(np.uint8), 4),
    "rgba8": PixelFormat(np.dtype(np.uint8), 4),
    "mono8": PixelFormat(np.dtype(np.uint8), 1),
    "mono16": PixelFormat(np.dtype(np.uint16), 1),
    # Packed 4:2:2, two bytes per pixel: YUYV (Y0 U Y1 V) and ROS's `yuv422`, which is UYVY (U Y0 V Y1).
    "yuv422_yuy2": PixelFormat(np.dtype(np.uint8), 2),
    "yuv422": PixelFormat(np.dtype(np.uint8), 2),
    **{f"bayer_{pattern}8": PixelFormat(np.dtype(np.uint8), 1) for pattern in BAYER_PATTERNS},
    **{f"bayer_{pattern}16": PixelFormat(np.dtype(np.uint16), 1) for pattern in BAYER_PATTERNS},
    "16UC1": PixelFormat(np.dtype(np.uint16), 1),
    "32FC1": PixelFormat(np.dtype(np.float32), 1),
}

# OpenCV conversion to BGR per camera encoding, as cv_bridge maps them (cv_bridge.cpp, getConversionCodes).
# OpenCV names a Bayer pattern by the 2x2 block starting at the second row and column, so ROS's bayer_rggb
# (row 0: R G, row 1: G B) is OpenCV's BayerBG; test_image_conversion proves each pattern on a mosaic.
_BAYER_CODES = {"rggb": "COLOR_BayerBG2BGR", "bggr": "COLOR_BayerRG2BGR", "gbrg": "COLOR_BayerGR2BGR",
                "grbg": "COLOR_BayerGB2BGR"}
_TO_BGR_CODES: dict[str, str] = {
    "bgra8": "COLOR_BGRA2BGR", "rgba8": "COLOR_RGBA2BGR",
    "yuv422_yuy2": "COLOR_YUV2BGR_YUY2", "yuv422": "COLOR_YUV2BGR_UYVY",
    **{f"bayer_{pattern}{bits}": code for pattern, code in _BAYER_CODES.items() for bits in (8, 16)},
}
# Encodings to_bgr8 turns into BGR: camera images. Depth (16UC1, 32FC1) is no picture for a detector.
BGR_ENCODINGS = ("bgr8", "rgb8", "mono8", "mono16", *_TO_BGR_CODES)


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


def check_pixel_count(width: int, height: int, max_pixels: int | None, what: str = "image") -> None:
    """ImageConversionError of kind "image too large" when width x height exceeds `max_pixels` (None: no limit)."""
    if max_pixels is not None and width * height > max_pixels:
        raise ImageConversionError(f"{what} of {width}x{height} = {width * height} pixels exceeds "
                                   f"max_image_pixels={max_pixels}", "image too large")


def image_to_numpy(msg: Image, max_pixels: int | None = None) -> np.ndarray:
    """Decode `msg` into a new array of shape (height, width) or (height, width, channels). An image of more
    than `max_pixels` pixels is refused from its header fields, before anything is copied."""
    fmt = pixel_format(msg.encoding)
    check_pixel_count(msg.width, msg.height, max_pixels, f"{msg.encoding!r} image")
    _check_layout(msg, fmt)
    if msg.height == 0 or msg.width == 0:
        shape = (msg.height, msg.width) if fmt.channels == 1 else (msg.height, msg.width, fmt.channels)
        return np.zeros(shape, dtype=fmt.dtype)
    if _cv_bridge is None:
        return _own_image_to_numpy(msg, fmt)
    try:
        decoded = _cv_bridge.imgmsg_to_cv2(msg, desired_encoding="passthrough")
        return np.array(decoded, dtype=fmt.dtype.newbyteorder("="), order="C", copy=True).reshape(
            (msg.height, msg.width) if fmt.channels == 1 else (msg.height, msg.width, fmt.channels))
    except (CvBridgeError, TypeError, ValueError):
        # The layout is checked above, so this is cv_bridge not knowing the encoding (older releases lack
        # yuv422_yuy2 and the 16-bit Bayer ones): the own decoder gives the same array.
        return _own_image_to_numpy(msg, fmt)


def to_bgr8(pixels: np.ndarray, encoding: str, purpose: str = "the detector") -> np.ndarray:
    """A decoded camera image (any of BGR_ENCODINGS) as a (height, width, 3) uint8 BGR array; anything else,
    or an image without pixels, raises ImageConversionError. 16-bit images keep their 8 high bits."""
    import cv2

    if pixels.size == 0:
        raise ImageConversionError(f"image of {pixels.shape[1]}x{pixels.shape[0]} pixels: nothing to use",
                                   "empty image")
    if encoding == "bgr8":
        return pixels
    if encoding == "rgb8":
        return np.ascontiguousarray(pixels[..., ::-1])
    if encoding in ("mono8", "mono16"):
        gray = (pixels >> 8).astype(np.uint8) if pixels.dtype == np.uint16 else pixels
        return np.repeat(gray[..., None], 3, axis=2)
    if encoding not in _TO_BGR_CODES:
        raise ImageConversionError(f"{purpose} needs one of {', '.join(BGR_ENCODINGS)}, not {encoding!r}",
                                   "image encoding")
    if encoding.startswith("yuv422") and pixels.shape[1] % 2:
        # Two pixels share one U and V sample: an odd width cannot be packed 4:2:2.
        raise ImageConversionError(f"{encoding!r} image of odd width {pixels.shape[1]}: 4:2:2 pixels come in pairs",
                                   "image layout")
    try:
        bgr = cv2.cvtColor(pixels, getattr(cv2, _TO_BGR_CODES[encoding]))
    except cv2.error as error:  # a shape OpenCV refuses must drop the frame, not stop the node
        raise ImageConversionError(f"{encoding!r} image of shape {pixels.shape} does not convert to BGR: "
                                   f"{_last_line(error)}", "image layout") from None
    # Bayer 16 demosaics at full depth, then keeps its 8 high bits, like mono16.
    return (bgr >> 8).astype(np.uint8) if bgr.dtype == np.uint16 else bgr


def _last_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


# Start-of-frame markers that carry a JPEG's size (every SOFn but DHT C4, JPG C8 and DAC CC).
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's first SOFn segment, None where the header ends before one."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None  # not at a marker: a corrupt header
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker in _JPEG_SOF:
            if i + 9 > len(data):
                return None
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        elif marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        elif 0xD0 <= marker <= 0xD7 or marker in (0x01, 0xD8):  # markers without a length
            i += 2
        else:
            length = int.from_bytes(data[i + 2:i + 4], "big")
            if length < 2:
                return None
            i += 2 + length
    return None


def _pillow_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of any other format Pillow knows; Image.open reads the header only."""
    try:
        from PIL import Image as PillowImage
    except ImportError:
        return None
    try:
        with warnings.catch_warnings():
            # Pillow warns about (and above twice its limit refuses) huge sizes itself: the caller decides.
            warnings.simplefilter("ignore", PillowImage.DecompressionBombWarning)
            with PillowImage.open(io.BytesIO(data)) as image:
                return image.size
    except PillowImage.DecompressionBombError as error:
        raise ImageConversionError(f"compressed image header: {error}", "image too large") from None
    except Exception:  # Pillow raises many types for data it cannot identify
        return None


def compressed_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) a compressed image's header claims, read without decoding; None if it says none."""
    if data.startswith(_PNG_SIGNATURE):
        # IHDR is the first chunk: length (4), type (4), width (4), height (4), all big-endian.
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return _pillow_size(data)


def decode_compressed(data: bytes | array | list[int], image_format: str, max_pixels: int | None = None) -> np.ndarray:
    """A sensor_msgs/CompressedImage's bytes as a BGR array; ImageConversionError when they do not decode.

    With `max_pixels`, the size the header claims is checked first: a few bytes may claim 50000x50000
    pixels, and decoding them would allocate gigabytes (or make OpenCV raise). A header that gives no size
    is refused then, as the memory its decoding needs cannot be bounded.
    """
    import cv2

    raw = bytes(data)
    if not raw:  # imdecode asserts on an empty buffer instead of returning None
        raise ImageConversionError(f"compressed image ({image_format!r}, 0 bytes) does not decode: no data",
                                   "undecodable")
    if max_pixels is not None:
        size = compressed_size(raw)
        if size is None:
            raise ImageConversionError(f"compressed image ({image_format!r}, {len(raw)} bytes) does not decode: "
                                       "its header gives no image size (PNG, JPEG or a format Pillow reads)",
                                       "undecodable")
        check_pixel_count(*size, max_pixels, f"compressed image ({image_format!r}, {len(raw)} bytes)")
    try:
        decoded = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as error:  # e.g. over OpenCV's own CV_IO_MAX_IMAGE_PIXELS: a bad frame, not a dead node
        raise ImageConversionError(f"compressed image ({image_format!r}, {len(raw)} bytes) does not decode: "
                                   f"{_last_line(error)}", "undecodable") from None
    if decoded is None:
        raise ImageConversionError(f"compressed image ({image_format!r}, {len(raw)} bytes) does not decode",
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
