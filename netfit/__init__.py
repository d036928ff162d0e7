"""netfit: `model.fit` as a service. The SDK (`Client`), the CLI (`netfit`) and the wire contract."""

from netfit.client import Client, NetfitError
from netfit.spec import JobSpec
from netfit.sse import EpochEvent, StatusEvent

__version__ = "0.1.0"
__all__ = ["Client", "NetfitError", "JobSpec", "EpochEvent", "StatusEvent", "load_model", "__version__"]


def load_model(path, **kwargs):
    """A downloaded checkpoint (.safetensors) → the trained torch module, taking raw inputs
    (`.predict(x)` gives labels, `.predict_proba(x)` probabilities, `.classes` the names). No
    server or database; needs the `engine` extra (torch), imported only when this is called."""
    from netfit.engine.inference import load_model as load

    return load(path, **kwargs)
