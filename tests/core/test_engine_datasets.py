"""RETURNN's ``cache_size`` key (HDF cache bytes per set, handed to datasets that take ``cache_byte_size``) and the
data keys every configured set must have before training starts."""

from __future__ import annotations

import pytest
from fake_dist import install_toy_plugin  # noqa: F401  (puts the toy plugin on the path)
from toy_plugin import ToyDataset

from returnn_core.config import Config
from returnn_core.engine import Engine
from returnn_core.engine.dataset_cache import cache_byte_sizes
from returnn_core.errors import ConfigError, DatasetError
from returnn_core.log import Log

G = 1024**3


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # one size: shared by the sets the config has (train and dev here), each rounded up by a byte as RETURNN
        ({"cache_size": "1G", "dev": "x"}, {"train": G // 2 + 1, "dev": G // 2 + 1, "eval": G // 2 + 1}),
        ({"cache_size": "1G", "dev": "x", "eval": "y"}, {k: G // 3 + 1 for k in ("train", "dev", "eval")}),
        ({"cache_size": "0"}, {"train": 0, "dev": 0, "eval": 0}),
        ({"cache_size": ["512M", "0"], "dev": "x"}, {"train": 512 * 1024**2 + 1, "dev": 0, "eval": 0}),
        ({"cache_size": ["2K", "1K", "100"]}, {"train": 2049, "dev": 1025, "eval": 101}),
        ({"cache_size": 4096}, {"train": 4097, "dev": 4097, "eval": 4097}),
    ],
)
def test_cache_sizes_as_returnn_splits_them(values, expected):
    assert cache_byte_sizes(Config({"train": "t", **values})) == expected


def test_unset_cache_size_leaves_datasets_alone():
    assert cache_byte_sizes(Config({"train": "t"})) is None


@pytest.mark.parametrize("value", [["1G", "1G", "1G", "1G"], "lots", "1T"])
def test_bad_cache_size_names_the_key(value):
    with pytest.raises(ConfigError, match="cache_size"):
        cache_byte_sizes(Config({"train": "t", "cache_size": value}))


class CachedToyDataset(ToyDataset):
    """A toy dataset with an HDF-like cache option."""

    def __init__(self, cache_byte_size: int = 123, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cache_byte_size = cache_byte_size


def test_engine_gives_each_set_its_share_unless_the_dataset_sets_its_own(manager):
    config = Config({
        "backend": "toy",
        "cache_size": "1K",
        "train": {"class": CachedToyDataset, "num_seqs": 3},
        "dev": {"class": CachedToyDataset, "num_seqs": 3, "cache_byte_size": 7},
        "eval": {"class": "ToyDataset", "num_seqs": 3},  # takes no cache option: gets none (and does not fail)
    })
    engine = Engine(config, manager=manager, log=Log(verbosity=0))
    assert engine.dataset("train").cache_byte_size == 1024 // 3 + 1
    assert engine.dataset("dev").cache_byte_size == 7
    assert isinstance(engine.dataset("eval"), ToyDataset)


class UnlabelledToyDataset(ToyDataset):
    """Toy seqs without the 'classes' stream."""

    def data_specs(self):
        return {"data": super().data_specs()["data"]}

    def _load_seq(self, corpus_idx):
        return {"data": super()._load_seq(corpus_idx)["data"]}


def test_a_dev_set_without_a_key_stops_before_the_first_epoch(tmp_path, manager):
    import io

    out = io.StringIO()
    config = Config({
        "backend": "toy", "task": "train", "num_epochs": 2, "batch_size": 40, "learning_rate": 1.0,
        "network": {"output": {"class": "softmax", "loss": "ce", "n_out": 2}},
        "train": {"class": "ToyDataset", "num_seqs": 10},
        "dev": {"class": UnlabelledToyDataset, "num_seqs": 4},
        "model": str(tmp_path / "model"),
    })
    with pytest.raises(DatasetError, match=r"^dataset UnlabelledToyDataset has no data 'classes', which the network "
                                           r"reads; it has: data$"):
        Engine(config, manager=manager, log=Log(verbosity=5, stream=out)).run()
    assert "epoch 1" not in out.getvalue() and not list(tmp_path.glob("model.*"))


def test_only_keys_used_as_classes_are_range_checked():
    import numpy as np

    from returnn_core.datasets import DatasetSeq, DataSpec, ExternData, generate_batches
    from returnn_core.engine.data_check import check_batch, class_keys, network_keys
    from returnn_core.network import resolve_network

    # RETURNN's image 'sizes' stream is declared sparse ([2, 1]) but holds heights and widths
    ext = ExternData({"data": DataSpec(2), "classes": DataSpec(2, sparse=True), "sizes": DataSpec(2, sparse=True)})
    seq = DatasetSeq(0, "img-0", {"data": np.zeros((4, 2), "f"), "classes": np.array([1, 0, 1], "int32"),
                                  "sizes": np.array([14, 9], "int32")})
    (batch,) = [b.to_data(ext) for b in generate_batches([seq], batch_size=0)]
    net = resolve_network({"sizes": {"class": "source", "data_key": "sizes", "from": "null"},
                           "output": {"class": "softmax", "loss": "ce", "from": ["data", "data:sizes"]}}, list(ext))
    assert class_keys(net, targets=True) == {"data", "sizes", "classes"}  # read as a layer source here
    net = resolve_network({"sizes": {"class": "source", "data_key": "sizes", "from": "null"},
                           "output": {"class": "softmax", "loss": "ce"}}, list(ext))
    assert network_keys(net, targets=True) == {"data", "sizes", "classes"}
    assert class_keys(net, targets=True) == {"data", "classes"}
    check_batch(UnlabelledToyDataset(), batch, ext, network_keys(net, targets=True), class_keys(net, targets=True))
    with pytest.raises(DatasetError, match=r"class 14 of data 'sizes' at frame 0 is outside 0\.\.1"):
        check_batch(UnlabelledToyDataset(), batch, ext, network_keys(net, targets=True))
