"""What a benchmark run found: every figure printed as it is measured, each goal with PASS or
MISS, and all of it kept for the machine-readable summary (--out)."""

from __future__ import annotations

import json
import math
import operator
import platform
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OPS = {"<=": operator.le, ">=": operator.ge}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def median_ratio(a: list[float], b: list[float]) -> float:
    """Median of per-round ratios a[i]/b[i]: contenders that ran side by side in one round shared
    that moment's load, so pairing them cancels most of a shared machine's noise."""
    return statistics.median(x / y for x, y in zip(a, b))


@dataclass
class Report:
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    goals: list[dict[str, Any]] = field(default_factory=list)
    section: str = ""

    def begin(self, section: str, title: str) -> None:
        self.section = section
        self.results.setdefault(section, {})
        print(f"\n=== {section}: {title}", flush=True)

    def note(self, text: str) -> None:
        print(text, flush=True)

    def record(self, key: str, value: Any) -> None:
        """Keep a figure or a table in the summary without printing it (printed by the caller)."""
        self.results[self.section][key] = value

    def figure(self, key: str, value: float, unit: str = "", goal: tuple[str, float] | None = None,
               label: str | None = None) -> None:
        """Print and keep one figure; with a goal ("<=", 1.05) it is judged PASS or MISS."""
        entry: dict[str, Any] = {"value": value, "unit": unit}
        line = f"  {label or key:<58} {value:>10.3f} {unit}"
        if goal is not None:
            op, target = goal
            passed = OPS[op](value, target)
            entry.update(goal=f"{op} {target:g}", passed=passed)
            line += f"   goal {op} {target:g}: {'PASS' if passed else 'MISS'}"
            self.goals.append({"section": self.section, "key": key, "value": value, "unit": unit,
                               "goal": f"{op} {target:g}", "passed": passed})
        self.results[self.section][key] = entry
        print(line, flush=True)

    def summary(self) -> None:
        if not self.goals:
            return
        print("\n=== goals")
        for g in self.goals:
            print(f"  {'PASS' if g['passed'] else 'MISS'}  {g['section']}: {g['key']} = {g['value']:.3f} {g['unit']}"
                  f" (goal {g['goal']})")

    def write(self, path: Path, argv: list[str]) -> None:
        import torch

        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"argv": argv, "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "machine": platform.platform(), "goals": self.goals, "sections": self.results}
        path.write_text(json.dumps(record, indent=2, default=str))
        print(f"\nwrote {path}")
