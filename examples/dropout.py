"""Dropout against over-fitting: the large network on the few-point cubic, without and with
dropout (p=0.3 after each hidden layer), neither with early stopping.

    python examples/dropout.py --plots curves/
"""

from __future__ import annotations

import overfitting
import compare

SPECS = ["overfitting_large_no_es.json", "overfitting_large_dropout.json"]


def main(argv: list[str] | None = None) -> int:
    return compare.main(argv, SPECS, __doc__.splitlines()[0], report=overfitting.gaps)


if __name__ == "__main__":
    raise SystemExit(main())
