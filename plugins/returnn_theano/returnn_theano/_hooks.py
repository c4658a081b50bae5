"""Entry point of the returnn-theano plugin: registrations only (imports nothing but the standard library and the core)."""

from returnn_core.plugin import Registrar, hookimpl

BACKEND = "theano"
_LAYERS = "returnn_theano.layers"


@hookimpl
def returnn_register_backends(registry: Registrar) -> None:
    """The PyTensor backend, selected by ``backend = "theano"``."""
    registry.register(
        BACKEND, "returnn_theano.backend:TheanoBackend", aliases=("pytensor",),
        description="Theano-API backend on PyTensor",
    )


@hookimpl
def returnn_register_layers(registry: Registrar) -> None:
    """Layer classes of the Theano backend."""
    layers = {
        "source": ("basic:SourceLayer", ()),
        "linear": ("basic:LinearLayer", ("forward", "hidden")),
        "softmax": ("basic:SoftmaxLayer", ()),
        "activation": ("basic:ActivationLayer", ()),
        "copy": ("basic:CopyLayer", ()),
        "dropout": ("basic:DropoutLayer", ()),
        "combine": ("basic:CombineLayer", ()),
        "concat": ("basic:ConcatLayer", ()),
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
    }
    for name, (target, aliases) in layers.items():
        registry.register(name, f"{_LAYERS}.{target}", backend=BACKEND, aliases=aliases)


@hookimpl
def returnn_register_rec_units(registry: Registrar) -> None:
    """Built-in scan units (``lstm`` switches to the registered ``nativelstm`` when there is one)."""
    registry.register(
        "lstm", "returnn_theano.units:LstmUnit", backend=BACKEND,
        aliases=("standardlstm", "basiclstm", "lstmblock", "lstmblockfused", "lstmp"),
    )
    registry.register("gru", "returnn_theano.units:GruUnit", backend=BACKEND)
    registry.register("rnn", "returnn_theano.units:RnnUnit", backend=BACKEND, aliases=("basicrnn",))


@hookimpl
def returnn_register_losses(registry: Registrar) -> None:
    """Losses of the Theano backend."""
    registry.register("ce", "returnn_theano.losses:CrossEntropyLoss", backend=BACKEND, aliases=("cross_entropy",))
    registry.register("mse", "returnn_theano.losses:MeanSquaredErrorLoss", backend=BACKEND)
    registry.register("bin_ce", "returnn_theano.losses:BinaryCrossEntropyLoss", backend=BACKEND)
    registry.register("ctc", "returnn_theano.losses:CtcLoss", backend=BACKEND)


@hookimpl
def returnn_register_updaters(registry: Registrar) -> None:
    """Optimizers of the Theano backend."""
    mod = "returnn_theano.optimizers"
    for name, cls in (("sgd", "Sgd"), ("momentum", "Momentum"), ("adam", "Adam"), ("nadam", "Nadam"),
                      ("adadelta", "Adadelta"), ("adagrad", "Adagrad"), ("rmsprop", "RmsProp")):
        registry.register(name, f"{mod}:{cls}", backend=BACKEND)
