"""Per-session work gives the same results in-process and on a 2-worker Dask LocalCluster.

Responses (integer counts scaled) are bit-identical. The GEMMs (``PS`` and neural images) are
float32 sums whose order depends on how many BLAS threads each process runs, which differs between
a Dask worker and the test process on a loaded machine: they agree to float32 rounding, which is
what is asserted (a few ulp of the largest value), not bit identity."""

import numpy as np
from rtdecode.offline.dataset import load_animal
from rtdecode.offline.experiments import split_images
from rtdecode.offline.parallel import Executor


def test_local_cluster_matches_in_process(three_animals):
    paths = three_animals[:2]
    with Executor("none") as ex:
        local = [ex.submit(load_animal, p, 32).result() for p in paths]
    with Executor("local", n_workers=2) as ex:
        assert "2 workers" in ex.description
        futures = [ex.submit(load_animal, p, 32) for p in paths]
        remote = [f.result() for f in futures]
        tr = np.arange(0, local[0].n_trials, 2)
        te = np.arange(1, local[0].n_trials, 2)
        remote_split = ex.submit(split_images, futures[0], tr, te, 5).result()
    for a, b in zip(local, remote, strict=True):
        assert a.name == b.name
        np.testing.assert_array_equal(a.response_rates, b.response_rates)
        np.testing.assert_array_equal(a.baseline_rates, b.baseline_rates)
        np.testing.assert_array_equal(a.stack, b.stack)
        np.testing.assert_array_equal(a.condition, b.condition)
    local_split = split_images(local[0], tr, te, 5)
    for a, b in (
        (local_split.ps, remote_split.ps),
        (local_split.train.images, remote_split.train.images),
        (local_split.test.images, remote_split.test.images),
    ):
        assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
        scale = float(np.abs(a).max())
        np.testing.assert_allclose(a, b, rtol=0, atol=16 * np.finfo(np.float32).eps * scale)
