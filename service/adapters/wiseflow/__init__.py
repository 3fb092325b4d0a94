"""The WISEflow HTTP client: auth, the shared rate limiter and breaker, retries, pagination.

Use one `WiseflowClient` per process (it implements `service.core.ports.WiseflowApi`).
"""

from __future__ import annotations

from .client import WiseflowClient, log_transition
from .records import OnRequest, Reply, RequestRecord

__all__ = ["OnRequest", "Reply", "RequestRecord", "WiseflowClient", "log_transition"]
