"""A local emulator of Scenario's REST API for Luma Uni-1 Max (see server.py)."""

from .server import EMULATOR_CHOICES as EMULATOR_CHOICES
from .server import GENERATE_PATH as GENERATE_PATH
from .server import KNOBS as KNOBS
from .server import MODEL_ID, Emulator, Fault, RecordedRequest, main, serve

__all__ = ["MODEL_ID", "Emulator", "Fault", "RecordedRequest", "main", "serve"]
