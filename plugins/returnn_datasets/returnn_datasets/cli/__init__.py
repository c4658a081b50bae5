"""``returnn`` subcommands of this plugin: ``dump-dataset`` and ``hdf-dump``."""
