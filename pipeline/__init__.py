"""Real-time fraud detection on Kafka.

The engine-free core (features, model, policy, drift, rollout) lives in plain
modules with no Kafka import; the Kafka processes are thin adapters around it.
"""

from pipeline.errors import FraudError
from pipeline.settings import Settings, load_settings

__version__ = "0.1.0"

__all__ = ["FraudError", "Settings", "__version__", "load_settings"]
