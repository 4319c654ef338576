"""edgekit: ship trained models to Raspberry Pi and Coral boards, and keep them running."""

__version__ = "0.1.0"
