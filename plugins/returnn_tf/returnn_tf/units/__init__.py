"""Built-in TF rec units (the ``rec_units`` registry holds them with those of other plugins)."""
