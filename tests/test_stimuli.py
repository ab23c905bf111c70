import numpy as np
import pytest

from rtdecode.core.stimuli import (
    ALLEN_TEMPLATE_SHAPE,
    STIMULUS_GRAY,
    AllenFrame,
    centred,
    render_static_gratings,
    static_grating_conditions,
)


def test_full_frame_geometry_matches_allen():
    f = AllenFrame()
    assert f.shape == ALLEN_TEMPLATE_SHAPE
    assert f.px_per_deg == pytest.approx(9.78, abs=0.01)
    # 0.04 cpd -> 244.3 px per cycle in the template frame (reference/allen.md 3.3)
    assert f.px_per_deg / 0.04 == pytest.approx(244.3, abs=0.5)


def test_scaled_frame_keeps_field_of_view():
    f = AllenFrame.scaled(0.25)
    assert f.shape == (230, 294)
    assert f.width / f.px_per_deg == pytest.approx(120.0)
    with pytest.raises(ValueError, match="frame scale"):
        AllenFrame.scaled(0)


def test_grating_grid_is_the_allen_one():
    cond = static_grating_conditions()
    assert cond.shape == (120, 3)
    assert sorted(set(cond[:, 0])) == [0, 30, 60, 90, 120, 150]
    assert sorted(set(cond[:, 1])) == [0.02, 0.04, 0.08, 0.16, 0.32]
    assert sorted(set(cond[:, 2])) == [0, 0.25, 0.5, 0.75]
    assert len({tuple(c) for c in cond}) == 120


@pytest.mark.parametrize(("ori", "sf"), [(0.0, 0.04), (90.0, 0.08), (30.0, 0.16), (150.0, 0.02)])
def test_grating_period_and_orientation(ori, sf):
    """The image is exactly the plane wave of the stated orientation and frequency (R^2 = 1),
    and not the one 30 degrees or 2x frequency away."""
    f = AllenFrame.scaled(0.5)
    g = render_static_gratings(f, [ori], [sf], [0.0])[0].astype(np.float64).ravel() - STIMULUS_GRAY
    x, y = f.degree_grid()

    def r2(o, s):
        arg = 2 * np.pi * s * (x * np.cos(np.deg2rad(o)) + y * np.sin(np.deg2rad(o)))
        basis = np.stack([np.cos(arg).ravel(), np.sin(arg).ravel()], axis=1)
        coef, *_ = np.linalg.lstsq(basis, g, rcond=None)
        return 1 - np.sum((g - basis @ coef) ** 2) / np.sum(g**2)

    assert r2(ori, sf) > 0.999
    assert r2(ori + 30, sf) < 0.2
    assert r2(ori, 2 * sf) < 0.2


def test_grating_contrast_and_phase():
    f = AllenFrame.scaled(0.25)
    g = render_static_gratings(f, [0, 0], [0.04, 0.04], [0.0, 0.5], contrast=0.8)
    assert g.max() <= STIMULUS_GRAY + 0.8 * 127.5 + 1e-3
    assert g.min() >= STIMULUS_GRAY - 0.8 * 127.5 - 1e-3
    np.testing.assert_allclose(g[0] - STIMULUS_GRAY, -(g[1] - STIMULUS_GRAY), atol=1e-3)


def test_blank_is_uniform_gray():
    f = AllenFrame.scaled(0.1)
    g = render_static_gratings(f, [np.nan], [np.nan], [np.nan])
    assert np.all(g == STIMULUS_GRAY)
    assert np.all(centred(g) == 0)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="one shape"):
        render_static_gratings(AllenFrame.scaled(0.1), [0, 30], [0.04], [0.0])
