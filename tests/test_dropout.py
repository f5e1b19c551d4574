"""Dropout: counter-based masks identical on every backend, inverted scaling, gradients, exact resume."""

from __future__ import annotations

import numpy as np
import pytest

from gpunn.backend import get_backend
from gpunn.backend.counter_rng import random_bits, stream_key
from gpunn.nn import Dense, Dropout, ReLU, Sequential, SoftmaxCrossEntropy
from gpunn.nn.layers import layer_from_description
from gpunn.training.run import train

DIGITS = dict(dataset="digits", batch_size=32, verbose=False, schedule="constant", lr=0.05)


M32 = 0xFFFFFFFF


def fmix(h: int) -> int:
    """MurmurHash3's 32-bit finaliser written again with Python integers."""
    h ^= h >> 16
    h = h * 0x85EBCA6B & M32
    h ^= h >> 13
    h = h * 0xC2B2AE35 & M32
    return h ^ (h >> 16)


def unmix(h: int) -> int:
    """fmix's inverse (each step undone in reverse order): finds the index that draws given bits."""
    h ^= h >> 16
    h = h * pow(0xC2B2AE35, -1, 2**32) & M32
    h ^= (h >> 13) ^ (h >> 26)
    h = h * pow(0x85EBCA6B, -1, 2**32) & M32
    return h ^ (h >> 16)


def reference_bits(count: int, key: int, first: int = 0) -> np.ndarray:
    """The generator written again with Python integers: fmix32 twice, as documented in counter_rng."""
    salt = fmix(key ^ 0x68E31DA4)
    return np.array([fmix(fmix((i * 0x9E3779B9 + key) & M32) ^ salt) for i in range(first, first + count)])


def index_drawing(bits: int, key: int) -> int:
    """The element index whose bits under `key` are `bits` (reference_bits run backwards)."""
    return (unmix(unmix(bits) ^ fmix(key ^ 0x68E31DA4)) - key) * pow(0x9E3779B9, -1, 2**32) & M32


def reference_key(*words: int) -> int:
    """stream_key written again: each word's low then high 32 bits, xored in, spread and mixed."""
    key = 0
    for word in words:
        for part in (word % 2**32, word // 2**32 % 2**32):
            key = fmix(((key ^ part) * 0x9E3779B9 % 2**32) ^ 0x5BD1E995)
    return key


def test_bits_match_a_plain_python_reference_on_every_backend(backend):
    key = stream_key(7, 3, 12345)
    bits = backend.to_host(random_bits(backend, 257, key))
    assert bits.dtype == np.uint32
    np.testing.assert_array_equal(bits.astype(np.int64), reference_bits(257, key))


def test_mask_is_the_same_on_every_backend(backend):
    shape, p, words = (64, 33), 0.3, (0, 1, 99)
    expected = get_backend("cpu", "float32").dropout_mask(shape, p, words)
    np.testing.assert_array_equal(backend.to_host(backend.dropout_mask(shape, p, words)), expected)


def test_mask_drops_p_and_scales_the_rest():
    b = get_backend("cpu", "float64")
    p, n = 0.25, 200_000
    mask = b.dropout_mask((n,), p, (0, 0, 0))
    dropped = np.mean(mask == 0)
    assert abs(dropped - p) < 4 * np.sqrt(p * (1 - p) / n)  # a binomial's 4 standard deviations
    np.testing.assert_array_equal(np.unique(mask), [0.0, 1 / (1 - p)])
    # a different step, layer or seed gives an unrelated mask (agreeing on about p^2 + (1-p)^2 of entries)
    for words in [(0, 0, 1), (0, 1, 0), (1, 0, 0)]:
        agree = np.mean((b.dropout_mask((n,), p, words) == 0) == (mask == 0))
        assert abs(agree - (p * p + (1 - p) ** 2)) < 0.01, words


@pytest.mark.parametrize("words", [(0,), (7, 3, 12345), (2**32,), (2**33 + 5, 1), (2**64 - 1, 0)])
def test_stream_key_mixes_both_halves_of_every_word(words):
    assert stream_key(*words) == reference_key(*words)


def test_the_generator_indexes_exactly_2_32_elements():
    cpu = get_backend("cpu", "float32")
    assert unmix(fmix(0x12345678)) == 0x12345678 and index_drawing(int(reference_bits(1, 9, 77)[0]), 9) == 77
    key = stream_key(1)
    last = cpu.to_host(random_bits(cpu, 1, key, first=2**32 - 1))
    np.testing.assert_array_equal(last.astype(np.int64), reference_bits(1, key, 2**32 - 1))
    with pytest.raises(ValueError) as err:
        random_bits(cpu, 2, key, first=2**32 - 1)
    assert str(err.value) == "the counter-based generator indexes at most 2^32 elements, asked for 4294967297"


def test_an_element_is_kept_exactly_when_its_bits_reach_p_times_2_32(backend64):
    """keep = bits >= round(p * 2^32), the threshold capped at the largest uint32: an element whose bits are
    all ones is kept at any p < 1 (p * 2^32 rounding up to 2^32 would drop it, and overflow a uint32)."""
    words = (5, 1, 2)
    key = stream_key(*words)

    def mask_at(bits, p):  # the one-element mask of the element that draws `bits`
        mask = backend64.dropout_mask((1,), p, words, first_row=index_drawing(bits, key))
        return backend64.to_host(mask)[0]

    threshold = 0x9E3779B9
    p = threshold / 2**32  # exact in float64: p * 2^32 is the threshold itself
    assert [mask_at(threshold, p), mask_at(threshold - 1, p)] == [1 / (1 - p), 0.0]
    p = 1 - 2**-40  # p * 2^32 = 2^32 - 2^-8 rounds to 2^32
    assert [mask_at(M32, p), mask_at(M32 - 1, p)] == [2.0**40, 0.0]


def test_a_mask_of_any_rank_is_the_rows_mask_reshaped(backend):
    flat = backend.to_host(backend.dropout_mask((3, 20), 0.5, (1, 2, 3)))
    cube = backend.to_host(backend.dropout_mask((3, 4, 5), 0.5, (1, 2, 3)))
    np.testing.assert_array_equal(cube, flat.reshape(3, 4, 5))
    last_row = backend.to_host(backend.dropout_mask((1, 4, 5), 0.5, (1, 2, 3), first_row=2))
    np.testing.assert_array_equal(last_row[0], cube[2])


def test_inference_is_identity_and_training_uses_the_step(backend64):
    b = backend64
    model = Sequential([Dense(6, 8), ReLU(), Dropout(0.5), Dense(8, 3)], b, seed=1)
    plain = Sequential([Dense(6, 8), ReLU(), Dense(8, 3)], b, seed=1)
    x = b.from_host(np.random.default_rng(0).standard_normal((5, 6)))
    np.testing.assert_array_equal(b.to_host(model.forward(x)), b.to_host(plain.forward(x)))
    np.testing.assert_array_equal(b.to_host(model.begin_update(x)[0]), b.to_host(plain.forward(x)))
    at_3 = b.to_host(model.begin_update(x, step=3)[0])
    assert not np.allclose(at_3, b.to_host(plain.forward(x)))
    np.testing.assert_array_equal(b.to_host(model.begin_update(x, step=3)[0]), at_3)
    assert not np.array_equal(b.to_host(model.begin_update(x, step=4)[0]), at_3)


def test_gradient_through_dropout_matches_finite_differences(backend64):
    b = backend64
    rng = np.random.default_rng(0)
    model = Sequential([Dense(5, 7), ReLU(), Dropout(0.4), Dense(7, 3)], b, seed=2, dtype="float64")
    x = b.from_host(rng.standard_normal((4, 5)))
    targets = b.one_hot(b.from_host(np.array([0, 2, 1, 2])), 3)
    loss_fn = SoftmaxCrossEntropy()

    def loss_at(weights):
        model.set_weights(weights)
        return b.to_scalar(loss_fn(b, model.begin_update(x, step=5)[0], targets)[0])

    weights = model.get_weights()
    loss_at(weights)
    outputs, backprop = model.begin_update(x, step=5)
    _, grad = loss_fn(b, outputs, targets)
    backprop(grad)
    analytic = b.to_host(model.layers[0].weight.grad)
    numeric = np.zeros_like(weights[0])
    for index in np.ndindex(weights[0].shape):
        for sign in (1, -1):
            shifted = [w.copy() for w in weights]
            shifted[0][index] += sign * 1e-6
            numeric[index] += sign * loss_at(shifted) / 2e-6
    assert np.abs(analytic).max() > 0
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_training_with_dropout_numpy_equals_strict_and_resume_is_exact(tmp_path):
    cpu = train(out=tmp_path / "cpu", epochs=3, dropout=0.3, dtype="float64", **DIGITS)
    strict = train(out=tmp_path / "strict", epochs=3, dropout=0.3, dtype="float64", device="strict", **DIGITS)
    no_dropout = train(out=tmp_path / "plain", epochs=3, dtype="float64", **DIGITS)
    train(out=tmp_path / "part", epochs=1, dropout=0.3, dtype="float64", **DIGITS)
    resumed = train(resume=tmp_path / "part", epochs=3, verbose=False)
    for a, s, r in zip(
        cpu.model.get_weights(), strict.model.get_weights(), resumed.model.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(a, s)
        np.testing.assert_array_equal(a, r)
    assert [layer["type"] for layer in cpu.model.describe()].count("Dropout") == 2
    assert cpu.history[-1]["loss"] != no_dropout.history[-1]["loss"]
    assert cpu.history[-1]["test_accuracy"] > 0.85  # dropout regularises, it does not break training


def test_a_mask_needs_no_upload(backend, monkeypatch):
    """The key travels as a scalar argument: no host array crosses to the device per step (GPU included)."""
    uploads = []
    original = backend._upload
    monkeypatch.setattr(backend, "_upload", lambda array, copy: uploads.append(array.shape) or original(array, copy))
    mask = backend.dropout_mask((128, 64), 0.2, (0, 1, 2))
    assert uploads == [] and tuple(mask.shape) == (128, 64)


def test_a_shard_of_the_batch_gets_its_rows_of_the_whole_batch_mask(backend):
    """Data-parallel ranks each mask their own rows of the global batch: K ranks drop what one process does."""
    whole = backend.to_host(backend.dropout_mask((10, 7), 0.5, (3, 2, 1)))
    shard = backend.to_host(backend.dropout_mask((4, 7), 0.5, (3, 2, 1), first_row=6))
    np.testing.assert_array_equal(shard, whole[6:])


def test_dropout_probability_default_range_and_description():
    assert Dropout().p == 0.5 and Dropout(0).p == 0.0
    for bad in (1.0, 1.5, -0.25):
        with pytest.raises(ValueError) as err:
            Dropout(bad)
        assert str(err.value) == f"dropout probability must lie in [0, 1), got {bad!r}"
    assert Dropout(0.25).describe() == {"type": "Dropout", "p": 0.25}
    assert layer_from_description({"type": "Dropout", "p": 0.25}).p == 0.25
    assert layer_from_description({"type": "Dropout"}).p == 0.5  # a checkpoint written without p


def test_no_step_or_p_zero_passes_the_arrays_through_untouched(backend64):
    """Inference, and dropout 0 while training, return the input and the gradient themselves: no mask."""
    b = backend64
    x, g = b.from_host(np.ones((3, 4))), b.from_host(np.full((3, 4), 2.0))
    for layer, step in ((Dropout(0.5), None), (Dropout(0.0), 7)):
        layer.bind(b)
        y, backprop = layer.begin_update(x, step)
        assert y is x and backprop(g) is g


def test_a_layer_masks_rows_from_the_first_unless_told_where_its_rows_start(backend64):
    b = backend64
    layer = Dropout(0.5)
    layer.bind(b)
    x = b.from_host(np.arange(1.0, 41.0).reshape(10, 4))
    mask = b.to_host(b.dropout_mask((10, 4), 0.5, (0, 0, 3)))
    np.testing.assert_array_equal(b.to_host(layer.begin_update(x, 3)[0]), b.to_host(x) * mask)
    np.testing.assert_array_equal(b.to_host(layer.begin_update(x[6:, :], 3, 6)[0]), (b.to_host(x) * mask)[6:])


def test_a_model_keys_masks_by_its_seed_the_layer_position_and_the_step(backend64):
    """Sequential gives each Dropout its seed (None counts as 0) and its index; a shard starting at row
    first_row gets those rows of the whole batch's masks."""
    b = backend64
    x = b.from_host(np.arange(1.0, 31.0).reshape(10, 3))
    for seed, key_seed in ((7, 7), (None, 0), (0, 0)):
        model = Sequential([ReLU(), Dropout(0.5)], b, seed=seed)
        whole = b.to_host(model.begin_update(x, step=2)[0])
        np.testing.assert_array_equal(
            whole, b.to_host(x) * b.to_host(b.dropout_mask((10, 3), 0.5, (key_seed, 1, 2)))
        )
        shard = model.begin_update(x[6:, :], step=2, first_row=6)[0]
        np.testing.assert_array_equal(b.to_host(shard), whole[6:])
