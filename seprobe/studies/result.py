"""What running a study gives: its table, notes and context lines, and what its report draws."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .study_file import Study


@dataclass
class StudyResult:
    study: Study
    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    context: list[str] = field(default_factory=list)  # lines that say how and where it was measured
    activation_run: object | None = None              # an ActivationRun, for the activations kind
    classes: list[int] = field(default_factory=list)
    ablation_result: object | None = None             # an AblationResult, for the ablation kind
    training: pd.DataFrame | None = None              # every run's history, for the training kind
    sweep: pd.DataFrame | None = None                 # a training study's [pruning] sweep, one row per plan
