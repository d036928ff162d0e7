"""The training engine: a plain library (torch + netfit only; no database, no Celery).

    from worker.engine import load_data, summarize, fit

    data = load_data(spec)                      # PreparedData: tensors + DataSignature
    summary = summarize(spec, data.signature)   # dry run on the meta device; SpecError if wrong
    result = fit(spec, data, callbacks=...)     # FitResult: stop reason, best/last weights, metrics

Modules: `errors` (SpecError, DataError), `data` (loaders, splits, preprocessing),
`layers` (spec → nn.Sequential, shape inference, summary), `fit` (the loop),
`early_stopping`, `schedules`, `checkpoints` (safetensors weights, resume state).
"""
