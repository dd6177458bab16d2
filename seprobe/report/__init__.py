"""What the commands show: tables, text and figures, made from the results of ``seprobe.cost`` and
``seprobe.probe`` (which compute and do not write prose)."""
