"""crysloop: closed-loop inverse design of crystalline materials."""

import os

__version__ = "0.1.0"

# Prefect defaults for offline, small machines; a user's own environment always wins.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
