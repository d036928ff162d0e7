"""Use the trained Iris model: name new flowers from their measurements, on the server
(/predict), from the downloaded checkpoint (netfit.load_model) and in onnxruntime.

    python examples/predict_iris.py
"""

from __future__ import annotations

import lab
import netfit

# sepal length, sepal width, petal length, petal width (cm): flowers the model has not seen
NEW_FLOWERS = [[5.0, 3.3, 1.4, 0.2], [6.1, 2.8, 4.7, 1.2], [7.2, 3.2, 6.0, 1.8], [5.9, 3.0, 5.1, 1.8]]


def main(argv: list[str] | None = None) -> int:
    args = lab.arguments(__doc__.splitlines()[0]).parse_args(argv)
    with netfit.Client(args.url) as client:
        job = client.wait(client.submit(lab.load_spec("iris_two_layers_small.json", args.epochs)).id)
        print(f"job {job.id}: {job.status}, best epoch {job.best_epoch}")
        out = client.predict(job.id, NEW_FLOWERS)
        for flower, name, probs in zip(NEW_FLOWERS, out["predictions"], out["probabilities"]):
            print(f"{flower} -> {name:<10} ({max(probs):.0%})")

        path = client.download_checkpoint(job.id, "best", f"{job.id}-best.safetensors")
        try:  # the same answers here, with no server: the checkpoint describes itself
            import torch

            model = netfit.load_model(path)
            print(f"load_model: {model.predict(torch.tensor(NEW_FLOWERS))} (classes {model.classes})")
        except ImportError:
            print("load_model needs torch (pip install 'netfit[engine]')")
        try:
            import numpy as np
            import onnxruntime

            onnx_path = client.export(job.id, f"{job.id}.onnx")
            session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            probs = session.run(None, {"input": np.array(NEW_FLOWERS, dtype=np.float32)})[0]
            print(f"onnxruntime: {[out['classes'][k] for k in probs.argmax(1)]}")
        except ImportError:
            print("the ONNX part needs onnxruntime (pip install 'netfit[export]')")
    return 0 if job.status == "succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(main())
