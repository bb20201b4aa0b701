"""What airloop relies on from aiosmtpd beyond its public API: an SMTP controller on a port the OS picks.

aiosmtpd's ``Controller`` checks its server is up by connecting to ``self.port`` from ``_trigger_server``
(private): with port 0 it would connect to port 0 and fail. The override reads the bound port from
``self.server`` (set before the check) first. ``tests/unit/vendor/test_vendor.py`` pins it.
"""

from __future__ import annotations

from aiosmtpd.controller import Controller


class FreePortController(Controller):
    """A ``Controller`` that accepts ``port=0``; :attr:`port` is the bound port once started."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()
