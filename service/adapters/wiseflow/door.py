"""The one door to WISEflow: every request, the token request included, is admitted by the gate, then sent.

    async with admission.slot(request, credentials) as slot:    # waits; attaches the credentials
        reply = await transport.handle(request, slot)           # sends once; tells the slot, then logs

Nothing else calls the transport, so no request can skip the rate budget, the saved pause or the breaker.
"""

from __future__ import annotations

from collections.abc import Mapping

from .admission import Admission, Attachable
from .records import Reply, Request
from .transport import Transport


class Door:
    """The gate and the transport of one client, in the only order they are used."""

    def __init__(self, admission: Admission, transport: Transport) -> None:
        self.admission = admission
        self.transport = transport

    async def send(
        self, request: Request, credentials: Attachable | None = None
    ) -> tuple[Reply, Mapping[str, str]]:
        """Send once when admitted: the `Reply`, and the credentials it carried (for a 401's `invalidate`)."""
        async with self.admission.slot(request, credentials) as slot:
            return await self.transport.handle(request, slot), slot.headers
