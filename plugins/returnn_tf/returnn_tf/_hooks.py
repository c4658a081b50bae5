"""Entry point of the returnn-tf plugin: registrations only (imports nothing but the standard library and the core)."""

from returnn_core.plugin import Registrar, hookimpl

BACKEND = "tf"

#: config class name -> (module:attr, aliases)
LAYERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "source": ("basic:SourceLayer", ()),
    "linear": ("basic:LinearLayer", ("forward", "hidden")),
    "softmax": ("basic:SoftmaxLayer", ()),
    "activation": ("basic:ActivationLayer", ()),
    "copy": ("basic:CopyLayer", ()),
    "dropout": ("basic:DropoutLayer", ()),
    "combine": ("basic:CombineLayer", ()),
    "concat": ("basic:ConcatLayer", ()),
    "eval": ("basic:EvalLayer", ()),
    "constant": ("basic:ConstantLayer", ()),
    "reinterpret_data": ("basic:ReinterpretDataLayer", ()),
    "rec": ("rec:RecLayer", ()),
    "get_last_hidden_state": ("rec:GetLastHiddenStateLayer", ()),
    "conv": ("conv:ConvLayer", ()),
    "pool": ("conv:PoolLayer", ()),
    "batch_norm": ("norm:BatchNormLayer", ()),
    "layer_norm": ("norm:LayerNormLayer", ()),
    "merge_dims": ("shape:MergeDimsLayer", ()),
    "split_dims": ("shape:SplitDimsLayer", ()),
    "slice": ("shape:SliceLayer", ()),
    "reduce": ("shape:ReduceLayer", ()),
    "window": ("shape:WindowLayer", ()),
    "pad": ("shape:PadLayer", ()),
    "expand_dims": ("shape:ExpandDimsLayer", ()),
    "squeeze": ("shape:SqueezeLayer", ()),
    "time_chunking": ("shape:TimeChunkingLayer", ()),
    "time_unchunking": ("shape:TimeUnChunkingLayer", ()),
    "subnetwork": ("subnetwork:SubnetworkLayer", ()),
}

UNITS: dict[str, tuple[str, tuple[str, ...]]] = {
    "lstmblockfused": ("lstm:FusedLSTMUnit", ("lstm",)),
    "standardlstm": ("lstm:StandardLSTMUnit", ()),
    "basiclstm": ("lstm:BasicLSTMUnit", ()),
    "lstmblock": ("lstm:LSTMBlockUnit", ()),
    "cudnnlstm": ("lstm:CudnnLSTMUnit", ()),
    "gru": ("simple:GRUUnit", ()),
    "rnn": ("simple:RNNUnit", ()),
}

LOSSES: dict[str, str] = {
    "ce": "framewise:CrossEntropyLoss",
    "generic_ce": "framewise:GenericCrossEntropyLoss",
    "mse": "framewise:MeanSquaredErrorLoss",
    "l1": "framewise:L1Loss",
    "bin_ce": "framewise:BinaryCrossEntropyLoss",
    "ctc": "sequence:CtcLoss",
    "edit_distance": "sequence:EditDistanceLoss",
    "via_layer": "via_layer:ViaLayerLoss",
}

OPTIMIZERS: dict[str, str] = {
    "sgd": "SGD",
    "momentum": "Momentum",
    "adam": "Adam",
    "nadam": "Nadam",
    "adadelta": "Adadelta",
    "adagrad": "Adagrad",
    "rmsprop": "RMSProp",
}


@hookimpl
def returnn_register_backends(registry: Registrar) -> None:
    """The TensorFlow backend."""
    registry.register(BACKEND, "returnn_tf.backend:TFBackend", aliases=("tensorflow",),
                      description="TensorFlow 2 backend")


@hookimpl
def returnn_register_layers(registry: Registrar) -> None:
    """TF layer classes."""
    for name, (target, aliases) in LAYERS.items():
        registry.register(name, f"returnn_tf.layers.{target}", backend=BACKEND, aliases=aliases)


@hookimpl
def returnn_register_rec_units(registry: Registrar) -> None:
    """Built-in TF rec units (``lstm`` prefers a registered ``nativelstm``, see the rec layer)."""
    for name, (target, aliases) in UNITS.items():
        registry.register(name, f"returnn_tf.units.{target}", backend=BACKEND, aliases=aliases)


@hookimpl
def returnn_register_losses(registry: Registrar) -> None:
    """TF losses."""
    for name, target in LOSSES.items():
        registry.register(name, f"returnn_tf.losses.{target}", backend=BACKEND)


@hookimpl
def returnn_register_updaters(registry: Registrar) -> None:
    """TF optimizers."""
    for name, target in OPTIMIZERS.items():
        registry.register(name, f"returnn_tf.optimizers:{target}", backend=BACKEND)


@hookimpl
def returnn_register_cli_tools(registry: Registrar) -> None:
    """``returnn tf-distributed``."""
    registry.register("tf-distributed", "returnn_tf.launcher:main",
                      description="train a config data-parallel on N local TF workers (MultiWorkerMirroredStrategy)")
