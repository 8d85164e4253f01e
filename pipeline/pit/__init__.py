"""Point-in-time tables (DESIGN section 6): the pure maths and the sharded build."""

from foundation.exports import lazy_exports

_EXPORTS = {
    "build_pit": "pipeline.pit.step",
    "verify_pit": "pipeline.pit.step",
    "PitBuildResult": "pipeline.pit.step",
    "PitBuildError": "pipeline.pit.step",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
