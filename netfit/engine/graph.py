"""A functional graph as one torch module: the nodes of netfit.spec_graph, run in the order given.

Every leaf module is a direct child numbered as in nn.Sequential ("0.weight", "3.bias"), so
that checkpoints, print(model) and the per-layer statistics read a graph as they read a
sequence; the wiring is a tuple of (first module, end module, input slots) per node.
"""

from __future__ import annotations

import torch
from torch import nn


class Add(nn.Module):
    """The element-wise sum of its inputs."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Concat(nn.Module):
    """Its inputs side by side on the features (channels) axis, the first after the batch."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=1)


class GraphNet(nn.Module):
    """nodes: per node, its modules (a chain; a join is one module taking every input) and its
    input slots (0: the network's input, k: node k-1's output). The last node is the output."""

    def __init__(self, nodes: list[tuple[list[nn.Module], tuple[int, ...]]], names: list[str]):
        super().__init__()
        wiring, k = [], 0
        for modules, inputs in nodes:
            for m in modules:
                self.add_module(str(k), m)
                k += 1
            wiring.append((k - len(modules), k, inputs))
        self.wiring, self.names = tuple(wiring), list(names)
        # the same modules, per node (a plain tuple: registered once, above): no lookups per step
        self._steps = tuple((tuple(modules), inputs) for modules, inputs in nodes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x]
        for modules, inputs in self._steps:
            if len(inputs) > 1:  # a join: one module over all its inputs
                y = modules[0](*[outs[i] for i in inputs])
            else:
                y = outs[inputs[0]]
                for m in modules:
                    y = m(y)
            outs.append(y)
        return outs[-1]

    def extra_repr(self) -> str:
        shown = ", ".join(f"{name} <- {[('input', *self.names)[i] for i in inputs]}"
                          for name, (_, _, inputs) in zip(self.names, self.wiring))
        return f"graph: {shown}"
