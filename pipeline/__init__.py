"""The flow: sources feed the stages sync -> PIT -> factor step -> load; the run and
the operations tools sit on them. Each stage's entry point is named here.
"""

from foundation.exports import lazy_exports

_EXPORTS = {
    "open_source": "pipeline.sources",
    "Source": "pipeline.sources",
    "run_sync": "pipeline.sync.runner",
    "SyncRequest": "pipeline.sync.runner",
    "build_pit": "pipeline.pit.step",
    "compute_factors": "pipeline.factor_step",
    "rerank_factors": "pipeline.factor_step",
    "load_datasets": "pipeline.load",
    "load_from_settings": "pipeline.load",
    "run_pipeline": "pipeline.run.job",
    "RunRequest": "pipeline.run.job",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
