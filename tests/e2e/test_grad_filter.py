"""``grad_filter`` of ``linear``/``softmax`` (RETURNN): frames whose gradient norm before the activation exceeds the
threshold pass no gradient; the same on both backends."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from returnn_core.config import Config  # noqa: E402
from returnn_core.datasets import DatasetSeq, DataSpec, ExternData, generate_batches  # noqa: E402
from returnn_core.log import Log  # noqa: E402
from returnn_core.network import resolve_network  # noqa: E402
from returnn_core.plugin import get_plugin_manager  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")
EXTERN = {"data": DataSpec(4), "classes": DataSpec(3, sparse=True)}


def _net(threshold: float) -> dict:
    return {"h": {"class": "linear", "activation": "tanh", "n_out": 5, "grad_filter": threshold},
            "output": {"class": "softmax", "loss": "ce", "from": "h"}}


def _batch():
    rng = np.random.RandomState(5)
    seqs = [DatasetSeq(i, f"s{i}", {"data": rng.randn(n, 4).astype("f"), "classes": rng.randint(0, 3, n)})
            for i, n in enumerate((5, 3))]
    ext = ExternData(EXTERN)
    return next(iter(generate_batches(seqs, batch_size=100, max_seqs=10))).to_data(ext)


def _step(backend_name: str, threshold: float, start: dict | None) -> tuple[dict, dict]:
    manager = get_plugin_manager()
    backend = manager.backends.get(backend_name)(Config({"optimizer": {"class": "sgd"}}), manager, Log(0))
    ext = ExternData(EXTERN)
    backend.build(resolve_network(_net(threshold), ext.keys()), ext, train=True)
    if start is not None:
        backend.set_param_values(start)
    before = backend.get_param_values()
    backend.train_step(_batch(), 1.0)
    return before, backend.get_param_values()


@pytest.mark.parametrize("backend_name", ["tf", "theano"])
def test_grad_filter_drops_frames_with_a_large_gradient(backend_name: str) -> None:
    start, free = _step("tf", 1e6, None)
    _, loose = _step(backend_name, 1e6, start)
    _, tight = _step(backend_name, 1e-9, start)
    np.testing.assert_allclose(loose["h/W"], free["h/W"], rtol=1e-4, atol=1e-6)
    assert np.abs(loose["h/W"] - start["h/W"]).max() > 1e-4  # the layer learns when nothing is filtered
    np.testing.assert_array_equal(tight["h/W"], start["h/W"])  # every frame's gradient is over 1e-9: none passes
    np.testing.assert_array_equal(tight["h/b"], start["h/b"])
    np.testing.assert_allclose(tight["output/W"], loose["output/W"], rtol=1e-4, atol=1e-6)  # layers above unaffected
