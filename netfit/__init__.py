"""netfit: `model.fit` as a service. The SDK (`Client`), the CLI (`netfit`) and the wire contract."""

from netfit.client import Client, NetfitError
from netfit.spec import JobSpec
from netfit.sse import EpochEvent, StatusEvent

__version__ = "0.1.0"
__all__ = ["Client", "NetfitError", "JobSpec", "EpochEvent", "StatusEvent", "__version__"]
