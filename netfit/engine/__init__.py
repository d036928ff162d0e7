"""The training engine: a plain library (torch + netfit only; no database, no Celery), usable
from a notebook — the lesson's low-level API beside the service's high-level one.

    from netfit.engine.data import load_data
    from netfit.engine.layers import summarize
    from netfit.engine.fit import fit

    data = load_data(spec)                      # PreparedData: tensors + DataSignature
    summary = summarize(spec, data.signature)   # a dry run (no training); SpecError if wrong
    result = fit(spec, data, callbacks=...)     # FitResult: stop reason, best/last weights, metrics

Needs the `engine` extra (torch, numpy, scikit-learn, safetensors). Modules: `errors`
(SpecError, DataError), `data` (load_data: a data set read, split and preprocessed; its parts in
`arrays`, `labels`, `formats`, `sources`, `preprocessing`, and `downloads` for MNIST-like sets
fetched once per machine), `layers` (spec → nn.Module, shape inference, summary), `fit`
(the loop), `packed` (K trials of one shape trained as one batched model), `run` (one run's
bookkeeping between epochs, shared by both loops), `losses` (losses and metrics), `optimizers`
(torch's, and the same rules batched over a pack), `early_stopping`, `schedules`, `checkpoints`
(safetensors weights, resume state). Importing this package imports nothing heavy.
"""
