"""The device runtime: load a model, run it, and see where the time goes.

Imports only numpy, the interpreter packages and (for preprocessing) Pillow."""

from edgekit.runtime.backends import TensorSpec, available
from edgekit.runtime.profiling import InvokeRecord, LatencyWindow
from edgekit.runtime.session import Session, load

__all__ = ["InvokeRecord", "LatencyWindow", "Session", "TensorSpec", "available", "load"]
