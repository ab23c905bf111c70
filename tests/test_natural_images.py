import numpy as np
from rtdecode.offline.sim.natural_images import natural_scene_stack, radial_power_spectrum

from rtdecode.core.stimuli import AllenFrame


def test_scenes_are_distinct_deterministic_and_natural():
    frame = AllenFrame.scaled(0.12)
    a = natural_scene_stack(frame, 118, seed=1)
    b = natural_scene_stack(frame, 118, seed=1)
    assert a.shape == (118, *frame.shape) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    flat = a.reshape(118, -1).astype(np.float64)
    corr = np.corrcoef(flat)
    assert np.max(corr[~np.eye(118, dtype=bool)]) < 0.9  # every image distinct
    assert abs(flat.mean() - 127) < 10 and 30 < flat.std(axis=1).mean() < 70


def test_power_spectrum_falls_like_natural_images():
    img = natural_scene_stack(AllenFrame.scaled(0.25), 3, seed=2)
    slopes = []
    for im in img:
        f, p = radial_power_spectrum(im)
        m = (f > 0.01) & (f < 0.25)
        slopes.append(np.polyfit(np.log(f[m]), np.log(p[m]), 1)[0])
    print("power-spectrum slopes (natural images ~ -2):", np.round(slopes, 2))
    assert all(-3.0 < s < -1.5 for s in slopes)
