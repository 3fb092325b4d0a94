"""The embedded WISEflow simulator: the `/v1` API of `openapi-1.34.0.json`, faults on demand, signed
webhooks with WISEflow's delivery semantics, and a fake SIS.

Public API: `build_simulator_app(config, clock=None)`, `SimConfig`,
`make_sim_config(profile, env, **overrides)`.
"""

from service.simulator.app import build_simulator_app
from service.simulator.config import SimConfig, make_sim_config

__all__ = ["SimConfig", "build_simulator_app", "make_sim_config"]
