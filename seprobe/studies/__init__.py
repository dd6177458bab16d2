"""Studies: one declarative TOML file per table of the paper (``spec``), run (``runs``) into a report of
measured against printed values (``reports``)."""
