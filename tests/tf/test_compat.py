"""Plugins written against the old TF API keep working on the core network: raw-TF layers, keyword losses
(sprint's included), third-party and duck-typed optimizers."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from returnn_tf.data import LayerOutput
from returnn_tf.layers.base import Context, Layer
from returnn_tf.losses.base import Loss as LegacyLoss
from tf_helpers import ToyDataset, batches_of

from returnn_core.config import Config
from returnn_core.datasets import DataSpec, ExternData
from returnn_core.frontend import Optimizer
from returnn_core.log import Log
from returnn_core.network import resolve_network
from returnn_core.plugin import PluginManager

EXTERN = ExternData({"data": DataSpec(3), "classes": DataSpec(2, sparse=True)})


class OldStyleGlu(Layer):
    """The GLU in plain TensorFlow, as TF-only plugins wrote layers before returnn_core.frontend."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        src = self.single_source(sources)
        n_out = self.require_n_out()
        w = self.param("W", (self.feature_dim(src), 2 * n_out), "glorot_uniform")
        b = self.param("b", (2 * n_out,), "zeros")
        x = tf.tensordot(src.tensor, w, axes=[[src.tensor.shape.rank - 1], [0]]) + b
        a, g = tf.split(x, 2, axis=-1)
        return src.with_tensor(a * tf.sigmoid(g), dim=n_out)


class KeywordCE(LegacyLoss):
    """Cross entropy in the legacy keyword protocol; records what it was given."""

    needs_seq_tags = True
    seen: dict = {}

    def __call__(self, *, logits, output, target, output_mask, seq_tags, target_dim, activation, get_layer_output,
                 **_):
        KeywordCE.seen = {"tags": seq_tags, "dim": target_dim, "activation": activation,
                          "glu": get_layer_output("glu")}
        xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target, logits=logits)
        return self.masked_sum(xent, output_mask), None, tf.reduce_sum(output_mask)


class SignSgd(Optimizer):
    """p -= lr * sign(g)."""

    slots = {"steps": 0.0}

    def update(self, ops, param, grad, slots, lr, step):
        return param - lr * ops.where(grad > 0.0, 1.0, -1.0), {"steps": slots["steps"] + 1.0}


class DuckSgd:
    """An optimizer of the old duck-typed TF interface (build, apply, state)."""

    def __init__(self, **opts) -> None:
        self.iterations = None

    def build(self, variables: dict) -> None:
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False)

    def apply(self, grads, variables, names, lr) -> None:
        self.iterations.assign_add(1)
        for g, v in zip(grads, variables):
            if g is not None:
                v.assign_sub(lr * tf.convert_to_tensor(g))

    def state(self) -> dict:
        return {"optimizer/iterations": self.iterations}


@pytest.fixture
def manager() -> PluginManager:
    pm = PluginManager(strict=False)
    pm.load_entry_points()
    pm.layers.register("old_glu", OldStyleGlu, backend="tf", plugin="compat-test")
    pm.losses.register("keyword_ce", KeywordCE, backend="tf", plugin="compat-test")
    pm.updaters.register("signsgd", SignSgd, backend="tf", plugin="compat-test")
    pm.updaters.register("ducksgd", DuckSgd, backend="tf", plugin="compat-test")
    return pm


def backend_for(pm: PluginManager, network: dict, **config):
    from returnn_tf.backend import TFBackend

    be = TFBackend(Config({"network": network, **config}), pm, Log(verbosity=0))
    be.build(resolve_network(network, list(EXTERN)), EXTERN, train=True)
    return be


def test_old_style_layer_and_keyword_loss_train(manager: PluginManager) -> None:
    net = {"glu": {"class": "old_glu", "n_out": 4},
           "output": {"class": "softmax", "from": "glu", "loss": "keyword_ce"}}
    be = backend_for(manager, net, adam=True)
    batch = batches_of(ToyDataset(8))[0]
    p = be.get_param_values()
    assert p["glu/W"].shape == (3, 8) and p["glu/b"].shape == (8,)
    glu, _ = be.forward_step(batch, "glu")
    x = batch.data["data"]
    z = x @ p["glu/W"] + p["glu/b"]
    ref_glu = z[..., :4] / (1.0 + np.exp(-z[..., 4:]))
    for b, n in enumerate(batch.seq_lens["data"]):
        np.testing.assert_allclose(glu[b, :n], ref_glu[b, :n], rtol=1e-5, atol=1e-5)
    logits = ref_glu @ p["output/W"] + p["output/b"]
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    mask = np.arange(x.shape[1])[None] < batch.seq_lens["data"][:, None]
    ref = -(np.take_along_axis(logp, batch.data["classes"][..., None], -1)[..., 0] * mask).sum()
    res = be.eval_step(batch)
    assert res.losses["output"] == pytest.approx(ref, rel=1e-4) and res.frames["output"] == mask.sum()
    assert "output" not in res.errors
    seen = KeywordCE.seen
    assert seen["dim"] == 2 and seen["activation"] == "softmax" and seen["tags"] is not None
    assert seen["glu"].shape.as_list() == [None, None, 4]
    scores = [be.train_step(batch, 0.05).losses["output"] for _ in range(5)]
    assert scores[-1] < scores[0]


def test_third_party_optimizer_runs_its_update_and_is_checkpointed(manager: PluginManager, tmp_path) -> None:
    net = {"output": {"class": "softmax", "loss": "ce"}}
    be = backend_for(manager, net, optimizer={"class": "signsgd"})
    assert type(be.optimizer) is SignSgd
    before = be.get_param_values()
    be.train_step(batches_of(ToyDataset(8))[0], 0.01)
    after = be.get_param_values()
    np.testing.assert_allclose(np.abs(after["output/W"] - before["output/W"]), 0.01, rtol=1e-4)
    be.save(str(tmp_path / "m"))
    reader = tf.train.load_checkpoint(str(tmp_path / "m"))
    names = set(reader.get_variable_to_shape_map())
    assert {"optimizer/iterations", "optimizer/output/W/steps", "optimizer/output/b/steps", "global_step"} <= names
    np.testing.assert_array_equal(reader.get_tensor("optimizer/output/W/steps"), 1.0)


def test_duck_typed_tf_optimizer(manager: PluginManager) -> None:
    be = backend_for(manager, {"output": {"class": "softmax", "loss": "ce"}}, optimizer={"class": "ducksgd"})
    before = be.get_param_values()
    be.train_step(batches_of(ToyDataset(8))[0], 0.1)
    assert not np.allclose(be.get_param_values()["output/W"], before["output/W"])
    assert int(be.optimizer.iterations.numpy()) == 1


def test_sprint_keyword_loss_gradient_is_its_error_signal(manager: PluginManager,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    tf_loss = pytest.importorskip("returnn_sprint.tf_loss")
    calls = []

    def fake_numpy_loss(self, log_probs, seq_lens, tags):
        calls.append([t.decode() for t in tags])
        errors = np.full(log_probs.shape, 0.5, np.float32)
        return np.arange(len(seq_lens), dtype=np.float32) + 1.0, errors

    monkeypatch.setattr(tf_loss.SprintLoss, "numpy_loss", fake_numpy_loss)
    net = {"output": {"class": "softmax", "n_out": 2, "loss": "sprint",
                      "loss_opts": {"sprint_opts": {"sprintExecPath": "/nonexistent"}}}}
    be = backend_for(manager, net)
    batch = batches_of(ToyDataset(4))[0]
    res = be.eval_step(batch)
    assert calls == [list(batch.tags)]
    assert res.losses["output"] == pytest.approx(sum(range(1, batch.num_seqs + 1)))
    before = be.get_param_values()
    be.train_step(batch, 1.0)
    # d loss / d logits = 0.5 on present frames -> d W = x^T (0.5 * mask), divided by the frame count
    x = batch.data["data"]
    mask = (np.arange(x.shape[1])[None] < batch.seq_lens["data"][:, None]).astype(np.float32)
    grad_w = np.einsum("btf,bt->f", x, mask)[:, None] * 0.5 / mask.sum()
    np.testing.assert_allclose(before["output/W"] - be.get_param_values()["output/W"], np.repeat(grad_w, 2, 1),
                               rtol=1e-4, atol=1e-6)
