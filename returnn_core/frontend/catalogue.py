"""The layers, rec units, losses and optimizers written once in the core; every backend plugin registers them all.

A backend's ``_hooks.py`` calls :func:`register` for each extension point with its own backend name, so all
backends provide exactly the same names and options; what a backend adds on top (a fast path under another
name, a layer that evaluates that framework's own code) it registers itself and documents why.
"""

from __future__ import annotations

from returnn_core.plugin import Registrar

_PKG = "returnn_core.frontend"

#: extension point -> config name -> (import target, aliases)
CATALOGUE: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "layers": {
        "source": ("layers.basic:SourceLayer", ()),
        "linear": ("layers.basic:LinearLayer", ()),
        "hidden": ("layers.theano_era.hidden:HiddenLayer", ("forward",)),
        "softmax": ("layers.basic:SoftmaxLayer", ()),
        "activation": ("layers.basic:ActivationLayer", ()),
        "copy": ("layers.basic:CopyLayer", ()),
        "dropout": ("layers.basic:DropoutLayer", ()),
        "combine": ("layers.basic:CombineLayer", ()),
        "concat": ("layers.basic:ConcatLayer", ()),
        "constant": ("layers.basic:ConstantLayer", ()),
        "reinterpret_data": ("layers.basic:ReinterpretDataLayer", ()),
        "rec": ("layers.rec:RecLayer", ()),
        "get_last_hidden_state": ("layers.rec:GetLastHiddenStateLayer", ()),
        "rnn_cell": ("layers.rec:RnnCellLayer", ()),
        "choice": ("layers.search:ChoiceLayer", ()),
        "decide": ("layers.search:DecideLayer", ()),
        "beam_scores": ("layers.search:BeamScoresLayer", ()),
        "conv": ("layers.conv:ConvLayer", ()),
        "pool": ("layers.conv:PoolLayer", ()),
        "batch_norm": ("layers.norm:BatchNormLayer", ()),
        "layer_norm": ("layers.norm:LayerNormLayer", ()),
        "merge_dims": ("layers.shape:MergeDimsLayer", ()),
        "split_dims": ("layers.shape:SplitDimsLayer", ()),
        "slice": ("layers.shape:SliceLayer", ()),
        "reduce": ("layers.shape:ReduceLayer", ()),
        "window": ("layers.shape:WindowLayer", ()),
        "pad": ("layers.shape:PadLayer", ()),
        "expand_dims": ("layers.shape:ExpandDimsLayer", ()),
        "squeeze": ("layers.shape:SqueezeLayer", ()),
        "time_chunking": ("layers.shape:TimeChunkingLayer", ()),
        "time_unchunking": ("layers.shape:TimeUnChunkingLayer", ()),
        "subnetwork": ("layers.subnetwork:SubnetworkLayer", ()),
        "accumulate_mean": ("layers.statistics:AccumulateMeanLayer", ()),
        "framewise_statistics": ("layers.statistics:FramewiseStatisticsLayer", ()),
        "compare": ("layers.elementwise:CompareLayer", ()),
        "gating": ("layers.elementwise:GatingLayer", ()),
        "elemwise_prod": ("layers.static_weights:ElemwiseProdLayer", ()),
        "weighted_sum": ("layers.static_weights:WeightedSumLayer", ()),
        "prefix_in_time": ("layers.time_axis:PrefixInTimeLayer", ()),
        "postfix_in_time": ("layers.time_axis:PostfixInTimeLayer", ()),
        "resize": ("layers.time_axis:ResizeLayer", ()),
        "split_batch_time": ("layers.time_axis:SplitBatchTimeLayer", ()),
        "combine_dims": ("layers.time_axis:CombineDimsLayer", ()),
        "dot_attention": ("layers.attention:DotAttentionLayer", ()),
        "gauss_window_attention": ("layers.attention:GaussWindowAttentionLayer", ()),
        "variable": ("layers.variable:VariableLayer", ()),
        # the Theano era's layer classes (the manual's NetworkHiddenLayer, NetworkLstmLayer, ... sections)
        "lstm": ("layers.theano_era.lstm_layers:LstmLayer", ("lstm_opt",)),
        "lstm_simple": ("layers.theano_era.lstm_layers:SimpleLstmLayer", ()),
        "lstm2": ("layers.theano_era.lstm_layers:Lstm2Layer", ()),
        "lstm3": ("layers.theano_era.lstm_layers:Lstm3Layer", ()),
        "ln_lstm": ("layers.theano_era.lstm_layers:LayerNormLstmLayer", ()),
        "native_lstm": ("layers.theano_era.lstm_layers:NativeLstmLayer", ()),
        "associative_lstm": ("layers.theano_era.associative:AssociativeLstmLayer", ()),
        "generic_lstm": ("layers.theano_era.generic_lstm:GenericLstmLayer", ()),
        "act_lstm": ("layers.theano_era.act_lstm:ActLstmLayer", ()),
        "gru": ("layers.theano_era.gated:GruLayer", ()),
        "sru": ("layers.theano_era.gated:SruLayer", ()),
        "lstm_half_gates": ("layers.theano_era.lstm_variants:LstmHalfGatesLayer", ()),
        "lstm_proj_gates": ("layers.theano_era.lstm_variants:LstmProjGatesLayer", ()),
        "lstm_complex": ("layers.theano_era.lstm_variants:LstmComplexLayer", ()),
        "1Dto2D": ("layers.theano_era.twod:OneDToTwoDLayer", ()),
        "1Dto2D_fixed_size": ("layers.theano_era.twod:OneDToTwoDFixedSizeLayer", ()),
        "2Dto1D": ("layers.theano_era.twod:TwoDToOneDLayer", ()),
        "conv2": ("layers.theano_era.twod:ConvPoolLayer2", ()),
        "embedding": ("layers.theano_era.hidden:EmbeddingLayer", ()),
        "rbf": ("layers.theano_era.features:RbfLayer", ()),
        "linear_comb": ("layers.theano_era.features:LinearCombLayer", ()),
        "polynomial_expansion": ("layers.theano_era.features:PolynomialExpansionLayer", ()),
        "random_selection": ("layers.theano_era.features:RandomSelectionLayer", ()),
        "trunc": ("layers.theano_era.time:TruncationLayer", ()),
        "time_blur": ("layers.theano_era.time:TimeBlurLayer", ()),
        "recurrent": ("layers.theano_era.recurrent:RecurrentLayer", ()),
        "linear_recurrent": ("layers.theano_era.recurrent:LinearRecurrentLayer", ()),
        "frame_concat_zero": ("layers.theano_era.time:FrameConcatZeroLayer", ()),
        "frame_cutoff": ("layers.theano_era.time:FrameCutoffLayer", ()),
        "time_shift": ("layers.theano_era.time:TimeShiftLayer", ()),
        "upsample": ("layers.theano_era.time:UpsampleLayer", ()),
        "chunking": ("layers.theano_era.time:ChunkingLayer", ()),
        "downsample": ("layers.theano_era.time:DownsampleLayer", ()),
        "reverse": ("layers.theano_era.features:ReverseLayer", ()),
        "add_zero_rows": ("layers.theano_era.features:AddZeroRowsLayer", ()),
        "remove_rows": ("layers.theano_era.features:RemoveRowsLayer", ()),
        "bin_op": ("layers.theano_era.features:BinOpLayer", ()),
        "idx_to_vec": ("layers.theano_era.features:IndexToVecLayer", ()),
        "scale_grad": ("layers.theano_era.features:ScaleGradLayer", ()),
        "sum": ("layers.theano_era.features:SumLayer", ()),
        "tanh_to_sigmoid": ("layers.theano_era.features:TanhToSigmoidLayer", ()),
        "sigmoid_to_tanh": ("layers.theano_era.features:SigmoidToTanhLayer", ()),
    },
    "rec_units": {
        "lstm": ("units:LstmUnit", ("standardlstm", "basiclstm", "lstmblock", "lstmblockfused", "cudnnlstm",
                                    "lstme", "lstmp", "lstmc", "lstmb", "blstm")),
        "gru": ("units:GruUnit", ()),
        "rnn": ("units:RnnUnit", ("basicrnn", "vanilla")),
        "sru": ("theano_units:SruUnit", ()),
    },
    "losses": {
        "ce": ("losses:CrossEntropyLoss", ("cross_entropy",)),
        "generic_ce": ("losses:GenericCrossEntropyLoss", ()),
        "mse": ("losses:MeanSquaredErrorLoss", ()),
        "l1": ("losses:L1Loss", ()),
        "bin_ce": ("losses:BinaryCrossEntropyLoss", ()),
        "ctc": ("losses:CtcLoss", ()),
        "edit_distance": ("losses:EditDistanceLoss", ()),
        "via_layer": ("losses:ViaLayerLoss", ()),
    },
    "updaters": {
        "sgd": ("optimizers:Sgd", ()),
        "momentum": ("optimizers:Momentum", ()),
        "adam": ("optimizers:Adam", ()),
        "nadam": ("optimizers:Nadam", ()),
        "adadelta": ("optimizers:Adadelta", ()),
        "adagrad": ("optimizers:Adagrad", ()),
        "rmsprop": ("optimizers:RmsProp", ()),
    },
}


def register(kind: str, registry: Registrar, backend: str) -> None:
    """Register every core definition of ``kind`` (``layers``, ``rec_units``, ``losses``, ``updaters``) for ``backend``."""
    for name, (target, aliases) in CATALOGUE[kind].items():
        registry.register(name, f"{_PKG}.{target}", backend=backend, aliases=aliases)
