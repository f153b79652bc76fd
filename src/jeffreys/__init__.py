"""jeffreys: speaker recognition with the Jeffreys-divergence output regulariser."""

__version__ = "0.1.0"
