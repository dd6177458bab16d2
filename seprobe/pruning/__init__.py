"""``seprobe prune``: the excitation as a channel-importance map (the paper's closing question), against the pruning
literature's criteria, on the exact structural surgery of :mod:`seprobe.models.pruning`.

:mod:`~seprobe.pruning.plan` holds the options (torch-free), :mod:`~seprobe.pruning.criteria` the channel scores,
:mod:`~seprobe.pruning.allocation` how a target becomes the channels kept, :mod:`~seprobe.pruning.run` the job.
"""
