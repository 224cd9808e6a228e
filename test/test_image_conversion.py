"""sensor_msgs/Image <-> numpy: row padding, byte order, every supported encoding, clear errors.

Expected arrays come from bytes packed by hand here (struct, explicit padding), not from the code
under test.
"""

from __future__ import annotations

import struct
import sys
import warnings

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from exlow_pose_ros.nodes import image_conversion
from exlow_pose_ros.nodes.image_conversion import (
    BGR_ENCODINGS,
    PIXEL_FORMATS,
    ImageConversionError,
    compressed_size,
    decode_compressed,
    image_to_numpy,
    numpy_to_image,
    to_bgr8,
)

from image_samples import ROS_BAYER, bayer_mosaic, jpeg_claiming, png_bomb

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


@pytest.mark.parametrize("encoding", ["nv12", "yuv420", "bayer_rggb32", "8UC3", "BGR8", ""])
def test_unsupported_encoding_is_named_in_the_error_with_the_supported_ones(encoding):
    msg = make_image("mono8", [bytes(4)], step=4)
    msg.encoding = encoding
    with pytest.raises(ImageConversionError, match=f"unsupported image encoding '{encoding}'") as raised:
        image_to_numpy(msg)
    assert raised.value.kind == "image encoding"
    listed = str(raised.value).split("supported: ")[1].split(", ")
    assert listed == list(PIXEL_FORMATS)
    for new in ("bgra8", "rgba8", "yuv422", "yuv422_yuy2", "bayer_rggb8", "bayer_grbg16"):
        assert new in listed


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


# --- Camera encodings to BGR. Expected values are built here from the pixel layouts the encodings define
# (bytes packed by hand), never by the converter's own OpenCV call.

def padded(rows: list[bytes], extra: int) -> tuple[list[bytes], int]:
    """Rows and a step with `extra` padding bytes per row (odd, so 16-bit rows lose alignment)."""
    return rows, len(rows[0]) + extra


@pytest.mark.parametrize("encoding", ["bgra8", "rgba8"])
def test_four_channel_images_drop_alpha_and_honour_order(encoding):
    bgr = [[(10 * r + c, 100 + r, 200 + c) for c in range(5)] for r in range(3)]
    order = (0, 1, 2) if encoding == "bgra8" else (2, 1, 0)
    rows = [bytes(v for b, g, red in row for v in ((b, g, red)[order[0]], g, (b, g, red)[order[2]], 77))
            for row in bgr]
    decoded = image_to_numpy(make_image(encoding, *padded(rows, 5)))
    assert decoded.shape == (3, 5, 4) and PAD not in decoded
    assert (decoded[..., 3] == 77).all()
    assert to_bgr8(decoded, encoding).tolist() == [[list(px) for px in row] for row in bgr]


def yuv422_rows(samples: list[list[tuple[int, int, int, int]]], encoding: str) -> list[bytes]:
    """Pixel pairs (Y0, U, Y1, V) packed as YUYV (yuv422_yuy2) or UYVY (ROS's yuv422)."""
    if encoding == "yuv422_yuy2":
        return [bytes(v for y0, u, y1, v_ in row for v in (y0, u, y1, v_)) for row in samples]
    return [bytes(v for y0, u, y1, v_ in row for v in (u, y0, v_, y1)) for row in samples]


@pytest.mark.parametrize("encoding", ["yuv422_yuy2", "yuv422"])
def test_packed_yuv422_decodes_its_byte_order(encoding):
    # Per row: a red pair (high V = Cr), a grey pair and a blue pair (high U = Cb), all at Y = 128. Read in the
    # other packing, Y and chroma bytes swap places and every pair comes out near-grey: the dominant channel
    # proves the order.
    samples = [[(128, 128, 128, 240), (128, 128, 128, 128), (128, 240, 128, 128)] for _ in range(4)]
    rows = yuv422_rows(samples, encoding)
    decoded = image_to_numpy(make_image(encoding, *padded(rows, 3)))
    assert decoded.shape == (4, 6, 2) and decoded.dtype == np.uint8 and PAD not in decoded
    assert decoded.tobytes() == b"".join(rows)  # the wire bytes, pixel by pixel
    bgr = to_bgr8(decoded, encoding).astype(int)
    assert bgr.shape == (4, 6, 3)
    red, grey, blue = bgr[:, 0:2], bgr[:, 2:4], bgr[:, 4:6]
    assert (red[..., 2] > red[..., 0] + 100).all() and (red[..., 2] > red[..., 1] + 100).all()
    assert (blue[..., 0] > blue[..., 2] + 100).all() and (blue[..., 0] > blue[..., 1] + 100).all()
    assert (grey.max(axis=-1) - grey.min(axis=-1) <= 1).all()


def test_the_two_yuv422_packings_give_the_same_colours():
    rng = np.random.default_rng(2)
    samples = [[tuple(int(v) for v in rng.integers(16, 240, 4)) for _ in range(4)] for _ in range(3)]
    images = {e: to_bgr8(image_to_numpy(make_image(e, *padded(yuv422_rows(samples, e), 1))), e)
              for e in ("yuv422_yuy2", "yuv422")}
    np.testing.assert_array_equal(images["yuv422_yuy2"], images["yuv422"])


def test_yuv422_of_odd_width_is_refused():
    decoded = np.zeros((2, 3, 2), np.uint8)
    with pytest.raises(ImageConversionError, match="odd width 3") as raised:
        to_bgr8(decoded, "yuv422")
    assert raised.value.kind == "image layout"


BANDS = {"R": (0, 0, 200), "G": (0, 200, 0), "B": (200, 0, 0)}  # BGR of flat red, green and blue patches


def three_bands(height: int = 10, band: int = 10) -> np.ndarray:
    """Flat red, green and blue vertical bands, BGR."""
    return np.concatenate([np.tile(np.array(BANDS[c], np.uint8), (height, band, 1)) for c in "RGB"], axis=1)


@pytest.mark.parametrize("pattern", sorted(ROS_BAYER))
def test_bayer8_mosaic_demosaics_to_the_colours_it_was_taken_of(pattern):
    scene = three_bands()
    mosaic = bayer_mosaic(scene, pattern)
    encoding = f"bayer_{pattern}8"
    decoded = image_to_numpy(make_image(encoding, *padded([row.tobytes() for row in mosaic], 7)))
    assert decoded.shape == (10, 30) and PAD not in decoded
    np.testing.assert_array_equal(decoded, mosaic)
    bgr = to_bgr8(decoded, encoding)
    assert bgr.shape == (10, 30, 3) and bgr.dtype == np.uint8
    for index, colour in enumerate("RGB"):
        # The inside of each flat patch (off its edges, where demosaicing mixes neighbours) is that colour.
        inside = bgr[3:7, index * 10 + 3:index * 10 + 7].reshape(-1, 3).astype(int)
        assert (np.abs(inside - BANDS[colour]) <= 1).all(), f"{colour} patch of {encoding}: {inside[:4].tolist()}"
        assert (inside.argmax(axis=1) == {"B": 0, "G": 1, "R": 2}[colour]).all()


@pytest.mark.parametrize("pattern", sorted(ROS_BAYER))
@pytest.mark.parametrize("bigendian", [True, False])
def test_bayer16_honours_byte_order_and_keeps_the_high_byte(pattern, bigendian):
    scene16 = three_bands().astype(np.uint16) * 257  # 200 -> 0xC8C8: the high byte is the 8-bit value
    mosaic = bayer_mosaic(scene16, pattern)
    form = ">H" if bigendian else "<H"
    rows = [b"".join(struct.pack(form, int(v)) for v in row) for row in mosaic]
    encoding = f"bayer_{pattern}16"
    decoded = image_to_numpy(make_image(encoding, *padded(rows, 3), bigendian=bigendian))
    assert decoded.dtype == np.uint16 and decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, mosaic)
    bgr = to_bgr8(decoded, encoding)
    assert bgr.dtype == np.uint8
    expected = to_bgr8(bayer_mosaic(three_bands(), pattern), f"bayer_{pattern}8")
    assert np.abs(bgr.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("bigendian", [True, False])
def test_mono16_to_bgr_keeps_the_high_byte(bigendian):
    values = [[0, 255, 256, 65535], [4660, 32768, 513, 1]]
    form = ">H" if bigendian else "<H"
    rows = [b"".join(struct.pack(form, v) for v in row) for row in values]
    bgr = to_bgr8(image_to_numpy(make_image("mono16", *padded(rows, 1), bigendian=bigendian)), "mono16")
    assert bgr.dtype == np.uint8 and bgr.shape == (2, 4, 3)
    assert bgr[..., 0].tolist() == [[v >> 8 for v in row] for row in values]
    assert (bgr == bgr[..., :1]).all()


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_depth_is_no_picture_for_the_detector(encoding):
    pixels = np.zeros((2, 2), PIXEL_FORMATS[encoding].dtype)
    with pytest.raises(ImageConversionError, match=f"needs one of .*not '{encoding}'") as raised:
        to_bgr8(pixels, encoding)
    assert raised.value.kind == "image encoding"
    assert ", ".join(BGR_ENCODINGS) in str(raised.value)


def test_every_camera_encoding_converts_and_every_one_is_a_pixel_format():
    rng = np.random.default_rng(9)
    for encoding in BGR_ENCODINGS:
        fmt = PIXEL_FORMATS[encoding]
        shape = (4, 6) if fmt.channels == 1 else (4, 6, fmt.channels)
        pixels = rng.integers(0, np.iinfo(fmt.dtype).max, shape, endpoint=True).astype(fmt.dtype)
        bgr = to_bgr8(image_to_numpy(numpy_to_image(pixels, encoding)), encoding)
        assert bgr.shape == (4, 6, 3) and bgr.dtype == np.uint8, encoding


# --- Image size limits: refused from header fields, before anything is copied or decoded.

def test_raw_image_over_the_pixel_limit_is_refused_from_its_header():
    msg = make_image("bgr8", [bytes(3 * 4)] * 3, step=12)
    assert image_to_numpy(msg, max_pixels=12).shape == (3, 4, 3)
    with pytest.raises(ImageConversionError, match=r"4x3 = 12 pixels exceeds max_image_pixels=11") as raised:
        image_to_numpy(msg, max_pixels=11)
    assert raised.value.kind == "image too large"
    # The claim alone decides: 6000x6000 with a few bytes of data is "too large", not a layout fault.
    msg.width = msg.height = 6000
    with pytest.raises(ImageConversionError, match="6000x6000") as raised:
        image_to_numpy(msg, max_pixels=33_177_600)
    assert raised.value.kind == "image too large"


def test_png_bomb_makes_opencv_raise_and_is_refused_before_decoding():
    bomb = png_bomb()
    assert compressed_size(bomb) == (50000, 50000)
    with pytest.raises(cv2.error):  # the fault: uncaught, this killed the tracker
        cv2.imdecode(np.frombuffer(bomb, np.uint8), cv2.IMREAD_COLOR)
    with pytest.raises(ImageConversionError, match=r"69 bytes\) of 50000x50000 = 2500000000 pixels exceeds") as raised:
        decode_compressed(bomb, "png", max_pixels=33_177_600)
    assert raised.value.kind == "image too large"
    # Without a limit, OpenCV's own error becomes the usual "undecodable" report.
    with pytest.raises(ImageConversionError, match=r"does not decode: .*CV_IO_MAX_IMAGE_PIXELS") as raised:
        decode_compressed(bomb, "png")
    assert raised.value.kind == "undecodable"


@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_size_is_read_from_its_frame_header(progressive):
    bomb = jpeg_claiming(6000, 6000, progressive)
    assert len(bomb) < 1000 and compressed_size(bomb) == (6000, 6000)
    with pytest.raises(ImageConversionError, match="6000x6000 = 36000000 pixels exceeds") as raised:
        decode_compressed(bomb, "jpeg", max_pixels=33_177_600)
    assert raised.value.kind == "image too large"
    # The decoder agrees with the header reader: a patched size within the limit decodes at that size.
    assert decode_compressed(jpeg_claiming(40, 24, progressive), "jpeg", max_pixels=40 * 24).shape == (24, 40, 3)


@pytest.mark.parametrize(("extension", "shape"), [(".png", (7, 13, 3)), (".jpg", (31, 17, 3)), (".bmp", (5, 9, 3)),
                                                  (".webp", (12, 20, 3)), (".tiff", (6, 4, 3))])
def test_real_images_report_their_size_and_decode_within_the_limit(extension, shape):
    data = cv2.imencode(extension, np.full(shape, 120, np.uint8))[1].tobytes()
    assert compressed_size(data) == (shape[1], shape[0])
    assert decode_compressed(data, extension[1:], max_pixels=shape[0] * shape[1]).shape == shape
    with pytest.raises(ImageConversionError, match="exceeds max_image_pixels"):
        decode_compressed(data, extension[1:], max_pixels=shape[0] * shape[1] - 1)


@pytest.mark.parametrize("width", [12000, 50000])
def test_other_formats_are_checked_through_pillow_without_its_warnings(width):
    # A BMP header claiming width x width: above Pillow's warning threshold (12000^2) and above the size
    # it refuses itself (50000^2). Neither may escape as a warning or an exception of another type.
    data = bytearray(cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    data[18:26] = struct.pack("<ii", width, width)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageConversionError) as raised:
            decode_compressed(bytes(data), "bmp", max_pixels=33_177_600)
    assert raised.value.kind == "image too large"


@pytest.mark.parametrize("data", [b"\x89PNG\r\n\x1a\n\0\0", b"\xff\xd8\xff\xe0\0\x10JFIF", b"not an image at all",
                                  b"\xff\xd8\xff\xda\0\x02"])
def test_compressed_data_without_a_size_is_undecodable(data):
    assert compressed_size(data) is None
    with pytest.raises(ImageConversionError, match="does not decode: its header gives no image size") as raised:
        decode_compressed(data, "jpeg", max_pixels=1000)
    assert raised.value.kind == "undecodable"


def test_empty_compressed_data_is_undecodable():
    with pytest.raises(ImageConversionError, match=r"0 bytes\) does not decode") as raised:
        decode_compressed(b"", "jpeg", max_pixels=1000)
    assert raised.value.kind == "undecodable"
