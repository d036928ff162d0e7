"""Did training get harder as layers were added? Six hidden layers of 32 units on the digits,
sigmoid vs ReLU, the same SGD recipe: each layer's gradient norm, recorded every epoch.

A sigmoid's slope is at most 1/4, so the gradient shrinks layer by layer on its way back: the
first layer's is orders of magnitude below the last's and the network barely learns. ReLU
passes the gradient through where it is active, so every layer learns.

    python examples/layer_stats.py --plots layers/
"""

from __future__ import annotations

import sys
from pathlib import Path

import compare
import netfit
from netfit.models import Job

SPECS = ["deep_sigmoid.json", "deep_relu.json"]


def gradient_ratios(client: netfit.Client, jobs: list[Job]) -> None:
    """The last layer's gradient norm over the first's, after the first and the last epoch."""
    print("\nname                  epoch   first-layer grad   last-layer grad   last / first")
    for job in jobs:
        epochs = client.layer_stats(job.id)
        for row in (epochs[:1] + epochs[-1:]) if len(epochs) > 1 else epochs:
            first, last = row.layers[0].grad_norm, row.layers[-1].grad_norm
            ratio = "-" if not first or last is None else f"{last / first:,.0f}x" if last >= 10 * first else f"{last / first:.2f}x"
            ratio = f"{ratio:>13}"
            print(f"{job.name:<20} {row.epoch:>6}   {first or 0:>16.3g}   {last or 0:>15.3g}   {ratio}")


def main(argv: list[str] | None = None) -> int:
    plots: list[str | None] = [None]

    def report(client: netfit.Client, jobs: list[Job]) -> None:
        gradient_ratios(client, jobs)
        if plots[0]:
            for job in jobs:
                path = Path(plots[0]) / f"{job.name or job.id}-layers.png"
                client.layers_plot(job.id, path=path)
                print(f"layer statistics: {path}")

    argv = list(argv) if argv is not None else sys.argv[1:]
    if "--plots" in argv:  # the curves go there too (compare.py); the layer plots beside them
        plots[0] = argv[argv.index("--plots") + 1]
        Path(plots[0]).mkdir(parents=True, exist_ok=True)
    return compare.main(argv, SPECS, __doc__.splitlines()[0], report=report)


if __name__ == "__main__":
    raise SystemExit(main())
