"""Robust image reading: EXIF orientation, modes, bit depths, corrupt files, input collection."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ovpanoptic.errors import ImageReadError, InputError
from ovpanoptic.imageio import as_rgb_array, collect_inputs, read_image, resize_longest_side, upright_size


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 30, 3), np.uint8)
    arr[:10, :10] = (255, 0, 0)  # red block top-left
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=100)
    out = read_image(path)
    assert out.shape == (30, 20, 3) and out.dtype == np.uint8
    assert out[3, 16, 0] > 200 and out[3, 16, 1] < 60  # the red block is now top-right
    assert out[3, 3, 0] < 60


@pytest.mark.parametrize(("suffix", "orientation"), [(".jpg", 6), (".png", 6), (".png", 3), (".webp", 8), (".jpg", 1)])
def test_the_header_size_is_the_size_read_image_returns(tmp_path, suffix, orientation):
    """``upright_size`` (what the up-front checks of frames, dataset images and package originals compare) agrees
    with ``read_image``, also for a PNG whose ``eXIf`` chunk turns it (the dataset check used to skip PNGs)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"img{suffix}"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(path, exif=exif)
    with Image.open(path) as img:
        width, height = upright_size(img)
    assert read_image(path).shape[:2] == (height, width)
    assert (width, height) == ((20, 30) if orientation in (5, 6, 7, 8) else (30, 20))


@pytest.mark.parametrize(
    ("mode", "data", "expected"),
    [
        ("L", np.full((2, 2), 77, np.uint8), (77, 77, 77)),
        ("I;16", np.full((2, 2), 65535, np.uint16), (255, 255, 255)),
        ("I;16", np.full((2, 2), 257 * 10, np.uint16), (10, 10, 10)),
    ],
)
def test_modes_and_bit_depths_become_rgb8(tmp_path, mode, data, expected):
    path = tmp_path / "x.png"
    img = Image.fromarray(data)
    assert img.mode == mode
    img.save(path)
    out = read_image(path)
    assert out.shape == (2, 2, 3) and tuple(out[0, 0]) == expected


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 0] = (0, 0, 0, 0)      # transparent -> white
    rgba[0, 1] = (0, 0, 200, 255)  # opaque blue stays
    path = tmp_path / "a.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    assert read_image(path).tolist() == [[[255, 255, 255], [0, 0, 200]]]
    assert as_rgb_array(rgba).tolist() == [[[255, 255, 255], [0, 0, 200]]]


def test_arrays_of_other_types():
    assert as_rgb_array(np.full((2, 2), 0.5, np.float32))[0, 0].tolist() == [128, 128, 128]
    assert as_rgb_array(np.full((1, 1, 3), 65535, np.uint16)).tolist() == [[[255, 255, 255]]]
    with pytest.raises(ImageReadError, match="NaN"):
        as_rgb_array(np.full((1, 1), np.nan, np.float32))


def test_corrupt_and_missing_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match=r"bad.jpg: not an image file"):
        read_image(bad)
    good = tmp_path / "t.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 9).save(good)
    truncated = tmp_path / "trunc.png"
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ImageReadError, match=r"trunc.png: cannot decode image"):
        read_image(truncated)
    with pytest.raises(ImageReadError, match="nope.png: no such file"):
        read_image(tmp_path / "nope.png")


def test_resize_longest_side():
    img = np.zeros((100, 50, 3), np.uint8)
    assert resize_longest_side(img, 40).shape == (40, 20, 3)
    assert resize_longest_side(img, 0) is img
    assert resize_longest_side(img, 200) is img


def test_collect_inputs_files_folders_globs(tmp_path):
    for name in ("b.jpg", "a.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "c.jpeg").write_bytes(b"x")
    assert [p.name for p in collect_inputs([str(tmp_path)])] == ["a.png", "b.jpg"]
    assert [p.name for p in collect_inputs([str(tmp_path / "**" / "*.jp*g")])] == ["b.jpg", "c.jpeg"]
    assert [p.name for p in collect_inputs([str(tmp_path / "a.png"), str(tmp_path)])] == ["a.png", "b.jpg"]
    with pytest.raises(InputError, match="input '.*missing.png' does not exist"):
        collect_inputs([str(tmp_path / "missing.png")])
    with pytest.raises(InputError, match="matches no file"):
        collect_inputs([str(tmp_path / "*.gif")])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="contains no image files"):
        collect_inputs([str(empty)])
