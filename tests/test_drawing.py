"""drawing.mnist_like: a drawn digit cropped, scaled to a 20-pixel box and centred by mass like MNIST."""

from __future__ import annotations

import numpy as np

from gpunn.cli.drawing import mnist_like


def test_three_corner_dots_centre_by_mass_not_by_box():
    # bounding box 20x20 (no scaling); centre of mass (19/3, 19/3) inside it, so the box's top-left goes
    # to floor(13.5 - 19/3 + 0.5) = 7 and the dots land on 7 and 7 + 19 = 26
    ink = np.zeros((50, 60))
    ink[10, 30] = ink[10, 49] = ink[29, 30] = 255
    out = mnist_like(ink)
    assert out.dtype == np.uint8 and out.shape == (28, 28)
    assert sorted(map(tuple, np.argwhere(out))) == [(7, 7), (7, 26), (26, 7)]
    assert out[7, 7] == out[7, 26] == out[26, 7] == 255


def test_square_is_halved_by_area_and_centred():
    # 40x40 box -> 20x20: each output pixel averages a 2x2 block; symmetric mass -> rows/cols 4..23
    ink = np.zeros((40, 40))
    ink[:2, :2] = 255  # one full block -> 255
    ink[38:, 38:] = 255
    ink[20, 20] = 255  # a quarter of a block -> 63.75 -> 64
    out = mnist_like(ink)
    assert out[4, 4] == 255 and out[23, 23] == 255
    assert out[4 + 10, 4 + 10] == 64
    assert np.count_nonzero(out) == 3


def test_wide_bar_keeps_its_aspect_ratio():
    # 10 tall x 40 wide -> 5 x 20; mass centre (2, 9.5) -> top floor(11.5 + 0.5) = 12, left 4
    ink = np.zeros((100, 100), dtype=np.uint8)
    ink[50:60, 30:70] = 200
    out = mnist_like(ink)
    expected = np.zeros((28, 28), dtype=np.uint8)
    expected[12:17, 4:24] = 200
    np.testing.assert_array_equal(out, expected)


def test_a_small_dot_is_scaled_up_to_the_box():
    ink = np.zeros((280, 280))
    ink[100:104, 100:102] = 255  # 4 tall, 2 wide -> 20 x 10
    out = mnist_like(ink)
    assert np.count_nonzero(out) == 200 and out.max() == 255
    rows, columns = np.nonzero(out)
    assert (rows.min(), rows.max(), columns.min(), columns.max()) == (4, 23, 9, 18)


def test_blank_drawing_is_blank():
    assert not mnist_like(np.zeros((280, 280))).any()
