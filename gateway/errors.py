"""The one exception tree of alertgw."""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error alertgw raises on purpose."""


class ConfigError(GatewayError):
    """The configuration is invalid; `problems` holds one line per error."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class JournalError(GatewayError):
    """The journal file cannot be used as it is (e.g. written by a newer alertgw)."""


class DriverError(GatewayError):
    """A driver lost or could not open its endpoint; the message names the endpoint."""


class DecodeError(GatewayError):
    """A payload could not be turned into a signal; `reason` is a stable metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class DeliveryError(GatewayError):
    """A handset channel could not deliver; the message names the handset."""


class PermanentDeliveryError(DeliveryError):
    """The channel refused this message for good (e.g. ESPA '3' NAK): resending cannot help."""


class UnheardDeliveryError(PermanentDeliveryError):
    """The channel took the message but nobody receives it (MQTT 5: no subscriber)."""


class ShutdownError(GatewayError):
    """Raised inside the supervisor to turn a shutdown signal into a clean exit."""
