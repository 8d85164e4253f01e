"""`ah run`: the whole job, its typed report, alerts, metrics and HTML page."""

from foundation.exports import lazy_exports

_EXPORTS = {
    "run_pipeline": "pipeline.run.job",
    "RunRequest": "pipeline.run.job",
    "RunResult": "pipeline.run.job",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
