"""ESPA 4.4.4 over serial: nurse-call calls in, DECT/pager calls out (placeholder, being built)."""

from __future__ import annotations

from gateway.config import Config
from gateway.metrics import Metrics
from gateway.ports import HandsetChannel, Source


def build_espa(config: Config, metrics: Metrics) -> tuple[list[Source], dict[str, HandsetChannel]]:
    """Build one link per `espa:` entry; return its sources and its handsets' channels."""
    del config, metrics
    return [], {}
