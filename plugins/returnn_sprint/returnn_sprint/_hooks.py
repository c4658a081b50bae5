"""Entry point of the returnn-sprint plugin: registrations only (imports nothing but the standard library and the core)."""

from returnn_core.plugin import Registrar, hookimpl


@hookimpl
def returnn_register_datasets(registry: Registrar) -> None:
    """Datasets reading Sprint caches or talking to a Sprint child process."""
    registry.register(
        "SprintCacheDataset",
        "returnn_sprint.cache_dataset:SprintCacheDataset",
        description="features and alignments from Sprint cache archives/bundles",
    )
    registry.register(
        "ExternSprintDataset",
        "returnn_sprint.extern_dataset:ExternSprintDataset",
        description="seqs streamed from a Sprint child process over pipes",
    )


@hookimpl
def returnn_register_losses(registry: Registrar) -> None:
    """The loss computed by a Sprint child (criterion and error signal from Sprint)."""
    registry.register(
        "sprint",
        "returnn_sprint.tf_loss:SprintLoss",
        backend="tf",
        description="loss and error signal from Sprint processes (gradient w.r.t. the pre-softmax activations)",
    )
    registry.register(
        "fast_bw",
        "returnn_sprint.tf_loss:FastBaumWelchLoss",
        backend="tf",
        description="full-sum Baum-Welch over the HMM automata Sprint exports",
    )


@hookimpl
def returnn_register_cli_tools(registry: Registrar) -> None:
    """``returnn sprint-cache``."""
    registry.register(
        "sprint-cache",
        "returnn_sprint.cache_cli:main",
        description="list, show, dump and --check Sprint cache archives and bundles",
    )
