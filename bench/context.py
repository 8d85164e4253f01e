"""What each stage is given: the scenario, repetitions, a scratch folder, the prepared cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.figures import StageResult
from bench.scenarios import Scenario
from bench.workdir import Prepared


@dataclass(frozen=True)
class StageContext:
    """The scenario, repetitions per measurement, a private scratch folder, for stages
    that read it the prepared cache, and the results of the stages run before."""

    scenario: Scenario
    reps: int
    scratch: Path
    prepared: Prepared | None = None
    earlier: dict[str, StageResult] = field(default_factory=dict)

    def data(self) -> Prepared:
        """The prepared cache (always there for stages that declare NEEDS_DATA)."""
        if self.prepared is None:
            msg = "this stage needs the prepared cache, which is missing"
            raise RuntimeError(msg)
        return self.prepared
