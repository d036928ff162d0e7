"""Train several architectures on the same data and print a leaderboard.

    python examples/compare.py                                   # Iris: one layer vs two layers (16/64/256 hidden)
    python examples/compare.py digits_mlp.json iris_one_layer.json --epochs 20 --plots curves/
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import lab
import netfit
from netfit.models import Job

IRIS = ["iris_one_layer.json", "iris_two_layers_small.json", "iris_two_layers_medium.json",
        "iris_two_layers_large.json"]


def main(argv: Sequence[str] | None = None, default_specs: Sequence[str] = IRIS,
         description: str = __doc__.splitlines()[0], report: Callable[[netfit.Client, list[Job]], None] | None = None) -> int:
    parser = lab.arguments(description)
    parser.add_argument("specs", nargs="*", default=list(default_specs),
                        help=f"spec files (default: {' '.join(default_specs)})")
    parser.add_argument("--plots", metavar="DIR", help="save each job's learning curves as DIR/<name>.png")
    args = parser.parse_args(argv)
    with netfit.Client(args.url) as client:
        jobs = lab.run_all(client, [lab.load_spec(name, args.epochs) for name in args.specs])
        print()
        print(lab.leaderboard(jobs))
        if report:
            report(client, jobs)
        lab.save_curves(client, jobs, args.plots)
    return 0 if all(job.status == "succeeded" for job in jobs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
