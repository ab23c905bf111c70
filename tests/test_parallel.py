"""Per-session work gives identical results in-process and on a 2-worker Dask LocalCluster."""

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
    np.testing.assert_array_equal(local_split.ps, remote_split.ps)
    np.testing.assert_array_equal(local_split.train.images, remote_split.train.images)
    np.testing.assert_array_equal(local_split.test.images, remote_split.test.images)
