"""P and G: pure maths over frames (DESIGN section 7), no I/O."""

from foundation.exports import lazy_exports

_EXPORTS = {
    "p_inputs": "factors.p",
    "p_scores": "factors.p",
    "g_inputs": "factors.g",
    "g_scores": "factors.g",
    "calc_dates": "factors.calendar",
    "year_ago_dates": "factors.calendar",
    "universe": "factors.universe",
    "P_SCHEMA": "factors.schema",
    "G_SCHEMA": "factors.schema",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
