"""sensor_msgs/Image <-> numpy: row padding, byte order, every supported encoding, clear errors.

Expected arrays come from bytes packed by hand here (struct, explicit padding), not from the code
under test.
"""

from __future__ import annotations

import struct
import sys

import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from exlow_pose_ros import image_conversion
from exlow_pose_ros.image_conversion import (
    PIXEL_FORMATS,
    ImageConversionError,
    image_to_numpy,
    numpy_to_image,
)

PAD = 0xEE  # padding bytes; a decoder that reads them shows this value in its output


def make_image(encoding: str, rows: list[bytes], step: int, bigendian: bool = False) -> Image:
    msg = Image()
    msg.height, msg.encoding, msg.is_bigendian, msg.step = len(rows), encoding, bigendian, step
    pixel_bytes = PIXEL_FORMATS[encoding].bytes_per_pixel
    msg.width = len(rows[0]) // pixel_bytes
    msg.data = b"".join(row + bytes([PAD]) * (step - len(row)) for row in rows)
    return msg


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_padded_colour_rows_decode_without_padding(encoding):
    pixels = [[(10 * r + c, 100 + r, 200 + c) for c in range(5)] for r in range(3)]
    rows = [bytes(v for px in row for v in px) for row in pixels]
    decoded = image_to_numpy(make_image(encoding, rows, step=5 * 3 + 7))
    assert decoded.shape == (3, 5, 3) and decoded.dtype == np.uint8
    # The channel order is the wire order: the encoding names it, the decoder does not reorder.
    assert decoded.tolist() == [[list(px) for px in row] for row in pixels]
    assert PAD not in decoded


def test_padded_mono8_decodes_to_2d():
    rows = [bytes([r * 16 + c for c in range(7)]) for r in range(4)]
    decoded = image_to_numpy(make_image("mono8", rows, step=8))
    assert decoded.shape == (4, 7)
    assert decoded.tolist() == [list(row) for row in rows]


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
@pytest.mark.parametrize("bigendian", [True, False])
def test_sixteen_bit_honours_byte_order_and_padding(encoding, bigendian):
    values = [[1, 258, 65535, 4096], [7, 0, 32768, 513]]
    form = ">H" if bigendian else "<H"
    rows = [b"".join(struct.pack(form, v) for v in row) for row in values]
    decoded = image_to_numpy(make_image(encoding, rows, step=4 * 2 + 6, bigendian=bigendian))
    assert decoded.dtype == np.uint16 and decoded.dtype.isnative
    assert decoded.tolist() == values


@pytest.mark.parametrize("bigendian", [True, False])
def test_float_depth_with_odd_step_and_big_endian(bigendian):
    # A step that is no multiple of 4 puts every row but the first off float alignment.
    values = [[0.5, -1.25, 1e-3], [3.0e4, 0.0, -7.75], [2.5, 1.0, np.inf]]
    form = ">f" if bigendian else "<f"
    rows = [b"".join(struct.pack(form, v) for v in row) for row in values]
    decoded = image_to_numpy(make_image("32FC1", rows, step=3 * 4 + 3, bigendian=bigendian))
    assert decoded.dtype == np.float32 and decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, np.array(values, dtype=np.float32))


def test_last_row_may_omit_its_padding():
    rows = [bytes([1, 2, 3]), bytes([4, 5, 6])]
    msg = make_image("mono8", rows, step=5)
    msg.data = msg.data[:-2]  # drop the final row's padding only
    assert image_to_numpy(msg).tolist() == [[1, 2, 3], [4, 5, 6]]


def test_decoded_array_does_not_alias_the_message():
    msg = make_image("mono8", [bytes([9, 9])], step=2)
    decoded = image_to_numpy(msg)
    decoded[0, 0] = 1
    assert msg.data[0] == 9


@pytest.mark.parametrize("encoding", sorted(PIXEL_FORMATS))
def test_round_trip_every_encoding(encoding):
    fmt = PIXEL_FORMATS[encoding]
    rng = np.random.default_rng(3)
    shape = (6, 9) if fmt.channels == 1 else (6, 9, fmt.channels)
    if fmt.dtype.kind == "f":
        pixels = rng.normal(size=shape).astype(fmt.dtype)
    else:
        pixels = rng.integers(0, np.iinfo(fmt.dtype).max, size=shape, endpoint=True).astype(fmt.dtype)
    header = Header(frame_id="camera_optical_frame")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = numpy_to_image(pixels, encoding, header)
    assert (msg.height, msg.width, msg.encoding) == (6, 9, encoding)
    assert msg.step == 9 * fmt.bytes_per_pixel and len(msg.data) == msg.step * 6
    assert msg.is_bigendian == (sys.byteorder == "big")
    assert msg.header == header
    np.testing.assert_array_equal(image_to_numpy(msg), pixels)


def test_encoding_from_a_non_native_array_is_converted():
    pixels = np.array([[1, 256]], dtype=">u2")
    msg = numpy_to_image(pixels, "mono16")
    assert struct.unpack("=2H", bytes(msg.data)) == (1, 256)


def test_zero_size_image_gives_an_empty_array():
    msg = make_image("rgb8", [b""], step=0)
    msg.height = 0
    assert image_to_numpy(msg).shape == (0, 0, 3)


@pytest.mark.parametrize("encoding", ["yuv422", "bgra8", "bayer_rggb8", "8UC3", ""])
def test_unsupported_encoding_is_named_in_the_error(encoding):
    msg = make_image("mono8", [bytes(4)], step=4)
    msg.encoding = encoding
    with pytest.raises(ImageConversionError, match=f"unsupported image encoding '{encoding}'"):
        image_to_numpy(msg)


def test_data_shorter_than_height_times_step_is_refused():
    msg = make_image("rgb8", [bytes(6)] * 3, step=6)
    msg.data = msg.data[:-1]
    with pytest.raises(ImageConversionError, match=r"holds 17 bytes .* needs 18"):
        image_to_numpy(msg)


def test_step_smaller_than_a_row_is_refused():
    msg = make_image("mono16", [bytes(8)] * 2, step=8)
    msg.step = 7
    with pytest.raises(ImageConversionError, match="step 7 is smaller than width 4"):
        image_to_numpy(msg)


@pytest.mark.parametrize(("pixels", "encoding", "message"), [
    (np.zeros((4, 4), np.uint8), "rgb8", "does not fit encoding 'rgb8'"),
    (np.zeros((4, 4, 4), np.uint8), "bgr8", "does not fit encoding 'bgr8'"),
    (np.zeros((4, 4), np.float64), "32FC1", "dtype float64 does not fit"),
    (np.zeros((4, 4), np.uint8), "mono16", "dtype uint8 does not fit"),
])
def test_encoding_mismatched_arrays_is_refused(pixels, encoding, message):
    with pytest.raises(ImageConversionError, match=message):
        numpy_to_image(pixels, encoding)


@pytest.mark.skipif(image_conversion.CvBridge is None,
                    reason="cv_bridge (ROS 2, from an apt install) is not importable here")
@pytest.mark.parametrize("encoding", sorted(PIXEL_FORMATS))
def test_cv_bridge_and_own_decoder_agree(encoding):
    fmt = PIXEL_FORMATS[encoding]
    rng = np.random.default_rng(5)
    raw = rng.integers(0, 256, size=(5, 7 * fmt.bytes_per_pixel), dtype=np.uint8)
    for bigendian in (False, True):
        msg = make_image(encoding, [row.tobytes() for row in raw], step=7 * fmt.bytes_per_pixel + 3,
                         bigendian=bigendian)
        np.testing.assert_array_equal(image_to_numpy(msg), image_conversion._own_image_to_numpy(msg, fmt))
