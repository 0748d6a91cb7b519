import numpy as np
import pytest

from charmotion.dit_core.errors import InvalidInputError
from charmotion.dit_core.palette import lock_palette
from charmotion.training.dataset import make_example


def _colours(array: np.ndarray) -> set[tuple[int, int, int]]:
    return set(map(tuple, array.reshape(-1, 3).tolist()))


def test_pixel_art_clip_keeps_its_colours_and_noise_is_snapped_back():
    example = make_example(3, "heldout", 4, 64)
    frames, reference = example["frames"], example["frames"][0]
    assert len(_colours(reference)) <= 256
    assert np.array_equal(lock_palette(frames[:1], reference), frames[:1])  # the reference is already in its palette
    noise = np.random.default_rng(0).integers(-6, 7, frames.shape)
    noisy = np.clip(frames.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    locked = lock_palette(noisy, reference)
    assert _colours(locked) <= _colours(reference)
    assert np.abs(locked.astype(int) - frames).mean() < 0.25 * np.abs(noisy.astype(int) - frames).mean()


def test_palette_size_limits_the_colours():
    rows, cols = np.meshgrid(np.arange(64) * 4, np.arange(64) * 4, indexing="ij")
    gradient = np.stack([rows, cols, np.full((64, 64), 128)], -1)
    reference = gradient.astype(np.uint8)
    locked = lock_palette(reference[None], reference, colors=8)
    assert len(_colours(locked)) <= 8
    assert np.abs(locked.astype(int) - reference).mean() < 24


def test_a_kept_key_colour_is_its_own_entry_however_few_colours():
    """The key background stays the key when the palette has fewer colours than the reference: median cut would
    average a lone key pixel away (and with it the clip's transparency)."""
    rows, cols = np.meshgrid(np.arange(64) * 4, np.arange(64) * 4, indexing="ij")
    reference = np.stack([rows, cols, np.full((64, 64), 128)], -1).astype(np.uint8)
    key = (255, 0, 255)
    frames = reference[None].copy()
    frames[0, :8] = key  # the key background showing at the top
    locked = lock_palette(frames, reference, colors=16, keep=[key])
    assert (locked[0, :8] == key).all() and len(_colours(locked)) <= 16
    with_key = reference.copy()
    with_key[0, 0] = key  # the key as one more reference colour, quantised with the others: lost
    assert key not in _colours(lock_palette(frames, with_key, colors=16))


def test_bad_input_says_what_is_expected():
    reference = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(InvalidInputError, match=r"frames must be uint8 RGB \[T, H, W, 3\]"):
        lock_palette(np.zeros((2, 8, 8, 3), np.float32), reference)
    with pytest.raises(InvalidInputError, match="palette colours must be 2 to 256, or 0 for no palette lock"):
        lock_palette(np.zeros((2, 8, 8, 3), np.uint8), reference, colors=1)
