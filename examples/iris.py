"""The Iris lab from Python: submit a 4-16-3 network, watch it train, save the curves.

    python examples/iris.py                      # then open curves.png
    python examples/iris.py --spec iris_one_layer.json --epochs 50 -o one_layer.png
"""

from __future__ import annotations

import lab
import netfit


def main(argv: list[str] | None = None) -> int:
    parser = lab.arguments(__doc__.splitlines()[0])
    parser.add_argument("--spec", default="iris_two_layers_small.json", help="spec file (default %(default)s)")
    parser.add_argument("-o", "--output", default="curves.png", help="learning curves file (default %(default)s)")
    args = parser.parse_args(argv)

    with netfit.Client(args.url) as client:
        job = client.submit(lab.load_spec(args.spec, args.epochs))
        print(f"job {job.id}: {job.summary.total_params} parameters" if job.summary else f"job {job.id}")
        for event in client.follow(job.id):
            if isinstance(event, netfit.EpochEvent):
                m = event.metrics
                print(f"epoch {m.epoch:>3}  train loss {m.train_loss:.4f} acc {m.train_accuracy:.3f}"
                      f"  val loss {m.val_loss:.4f} acc {m.val_accuracy:.3f}")
            elif isinstance(event, netfit.StatusEvent):
                print(f"status: {event.status}")
            else:  # its life on the cluster: waiting for a worker, lost, preempted, resumed
                print(event)
        job = client.job(job.id)
        test = ", ".join(f"{k} {v:.4f}" for k, v in (job.test_metrics or {}).items() if v is not None)
        print(f"{job.status}: stopped by {job.stop_reason} at epoch {job.epochs_completed}, "
              f"best epoch {job.best_epoch}; {test or 'no test metrics'}")
        client.curves(job.id, path=args.output)
        print(f"learning curves: {args.output}")
    return 0 if job.status == "succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(main())
