import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rtdecode.core.model_input import ImageNormalisation
from rtdecode.core.neural_image import (
    condition_sums,
    leave_one_out_images,
    neural_images,
    preferred_stimuli,
    preferred_stimuli_from_conditions,
    preferred_stimulus_sums,
)

floats = st.floats(-10, 10, allow_nan=False, width=32)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n_trials=st.integers(1, 12), n_units=st.integers(1, 6), n_pix=st.integers(1, 20))
def test_ps_and_images_match_naive_loops(data, n_trials, n_units, n_pix):
    R = data.draw(arrays(np.float32, (n_trials, n_units), elements=floats))
    S = data.draw(arrays(np.float32, (n_trials, n_pix), elements=floats))
    ps_naive = np.zeros((n_units, n_pix))
    for i in range(n_units):
        for t in range(n_trials):
            ps_naive[i] += R[t, i] * S[t].astype(np.float64)
    ps_naive /= n_trials  # PS is the mean over its fit trials (DESIGN section 2, "One scale")
    img_naive = np.zeros((n_trials, n_pix))
    for t in range(n_trials):
        for i in range(n_units):
            img_naive[t] += R[t, i] * ps_naive[i]
    PS = preferred_stimuli(R, S, chunk_pixels=7)
    np.testing.assert_allclose(PS, ps_naive, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(preferred_stimulus_sums(R, S), ps_naive * n_trials, rtol=1e-4, atol=1e-3 * n_trials)
    images = neural_images(R, PS, chunk_trials=5)
    scale = np.abs(img_naive).max() + 1
    np.testing.assert_allclose(images, img_naive, rtol=1e-3, atol=1e-4 * scale)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n_trials=st.integers(1, 15), n_units=st.integers(1, 5), n_cond=st.integers(1, 6))
def test_condition_path_equals_direct_path(data, n_trials, n_units, n_cond):
    R = data.draw(arrays(np.float32, (n_trials, n_units), elements=floats))
    cond = data.draw(arrays(np.int64, (n_trials,), elements=st.integers(0, n_cond - 1)))
    stack = data.draw(arrays(np.float32, (n_cond, 3, 4), elements=floats))
    direct = preferred_stimuli(R, stack[cond])
    via = preferred_stimuli_from_conditions(R, cond, stack)
    np.testing.assert_allclose(via, direct, rtol=1e-4, atol=1e-3)


def test_shapes_and_errors():
    R = np.ones((4, 2), np.float32)
    with pytest.raises(ValueError, match="4 trials"):
        preferred_stimuli(R, np.ones((3, 5)))
    with pytest.raises(ValueError, match="condition indices"):
        condition_sums(R, np.array([0, 1, 2, 9]), 3)
    PS = preferred_stimuli(R, np.ones((4, 2, 3)))
    assert PS.shape == (2, 6)
    out = np.empty((4, 6), np.float32)
    assert neural_images(R, PS, out=out) is out
    assert neural_images(R[0], PS).shape == (1, 6)
    with pytest.raises(ValueError, match="out must be"):
        neural_images(R, PS, out=np.empty((4, 5), np.float32))


def test_model_input_normalisation():
    imgs = np.random.default_rng(0).normal(3, 2, (10, 16)).astype(np.float32)
    norm = ImageNormalisation.fit(imgs, 4)
    x = norm.to_model_input(imgs)
    assert x.shape == (10, 3, 4, 4)
    assert abs(x.mean()) < 1e-5 and abs(x.std() - 1) < 1e-4
    np.testing.assert_array_equal(x[:, 0], x[:, 2])


def test_ps_is_a_mean_so_images_do_not_grow_with_the_fit_set():
    """Doubling the fit set by repeating it leaves PS, and so every image, unchanged (a sum would double)."""
    rng = np.random.default_rng(0)
    R = rng.normal(0, 1, (30, 5)).astype(np.float32)
    S = rng.normal(0, 1, (30, 12)).astype(np.float32)
    once = preferred_stimuli(R, S)
    twice = preferred_stimuli(np.concatenate([R, R]), np.concatenate([S, S]))
    np.testing.assert_allclose(twice, once, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(neural_images(R, twice), neural_images(R, once), rtol=1e-4, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(data=st.data(), n_trials=st.integers(2, 12), n_units=st.integers(1, 5), n_cond=st.integers(1, 6))
def test_leave_one_out_images_use_the_ps_of_the_other_trials(data, n_trials, n_units, n_cond):
    R = data.draw(arrays(np.float32, (n_trials, n_units), elements=floats))
    cond = data.draw(arrays(np.int64, (n_trials,), elements=st.integers(0, n_cond - 1)))
    stack = data.draw(arrays(np.float32, (n_cond, 2, 3), elements=floats))
    got = leave_one_out_images(R, cond, stack, chunk_trials=3)
    for t in range(n_trials):
        others = np.delete(np.arange(n_trials), t)
        want = neural_images(R[t], preferred_stimuli_from_conditions(R[others], cond[others], stack))[0]
        scale = np.abs(R).max() ** 2 * n_units * np.abs(stack).max() + 1  # float32 rounding of R_t A
        np.testing.assert_allclose(got[t], want, rtol=1e-3, atol=1e-4 * scale)
    with pytest.raises(ValueError, match="at least 2"):
        leave_one_out_images(R[:1], cond[:1], stack)
