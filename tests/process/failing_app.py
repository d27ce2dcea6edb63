"""A test double around the real WorkerApp: start() fails while PREFIX/fail-start exists.

Only for driving the master through worker start failures, which the real app has no
reliable way to produce; everything else is the real application.
"""

import os

from gateway.errors import GatewayError
from gateway.http.server import WorkerApp


class FailingApp(WorkerApp):
    """The real app, except that it refuses to start when told to by a marker file."""

    async def start(self, sockets):
        if os.path.exists(os.path.join(self.config.prefix, "fail-start")):
            raise GatewayError("refusing to start: fail-start marker present")
        await super().start(sockets)
        # Tells a test that this worker is past the marker check (one worker answering says
        # nothing about the others, which may still be starting).
        open(os.path.join(self.config.prefix, f"started.{os.getpid()}"), "w").close()
