"""A wire-compatible Tushare Pro simulator with a deterministic synthetic A-share market.

Usage: `Simulator(SimulatorConfig(...))`, then `.transport()` for httpx (in-process),
`.serve()` for a real HTTP server, `.ground_truth(api, **params)` for tests.
`serve_forever(config, host, port)` runs the server in the foreground (`ah sim serve`);
`move_today(url, ...)` moves a served simulator's today (`ah sim advance`).
"""

from pipeline.sources.simulator.admin import SimulatorUnreachableError, move_today
from pipeline.sources.simulator.config import SimulatorConfig
from pipeline.sources.simulator.server import SimulatorServer
from pipeline.sources.simulator.simulator import Simulator, serve_forever

__all__ = [
    "Simulator",
    "SimulatorConfig",
    "SimulatorServer",
    "SimulatorUnreachableError",
    "move_today",
    "serve_forever",
]
