"""A model spec as a graph: each layer's inputs resolved, each block used expanded into its
layers. Plain Python on the spec's layer objects (no torch), so that the spec's validation
checks what needs no data - names, order, blocks - and the engine builds from the same nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from netfit.suggest import did_you_mean

INPUT = "input"  # the reserved name of the network's input (inside a block: the block's input)
JOINS = ("add", "concat")  # the layers that take several inputs


@dataclass(frozen=True)
class Node:
    """One layer of the expanded graph. `inputs` are slots: 0 is the network's input, k the
    output of node k-1. A block's layers are named "<block layer>.<layer>", and its last layer
    by the block layer's own name (what later layers refer to)."""

    name: str
    layer: Any
    loc: tuple[str | int, ...]  # where the layer is defined: ("model", "blocks", "res", "layers", 1)
    block: str | None  # the block it is defined in
    inputs: tuple[int, ...]

    @property
    def where(self) -> str:
        return f"node '{self.name}' ({path(self.loc)}, {self.layer.type})"


def path(loc: Sequence[str | int]) -> str:
    """("model", "blocks", "res", "layers", 1) -> "model.blocks.res.layers[1]"."""
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(loc))


def is_graph(layers: Sequence[Any], blocks: Mapping[str, Any]) -> bool:
    """Whether a model needs the graph: a plain list without names, inputs, joins or blocks is a sequence."""
    return bool(blocks) or any(l.name or l.inputs or l.type in (*JOINS, "block") for l in layers)


def _where(loc: tuple[str | int, ...], layer: Any) -> str:
    return f"{path(loc)} ({f'{layer.name!r}, ' if layer.name else ''}{layer.type})"


def _scope_problem(layers: Sequence[Any], prefix: tuple[str, ...], blocks: Mapping[str, Any]) -> str | None:
    """The first problem of one list of layers: names, inputs that are not earlier layers,
    unknown blocks, outputs nobody takes."""
    seen: dict[str, int] = {}
    later = {layer.name: i for i, layer in enumerate(layers) if layer.name}
    used: set[int] = set()
    for i, layer in enumerate(layers):
        where = _where((*prefix, i), layer)
        if layer.name in seen:
            return (f"{where}: the name '{layer.name}' is already taken by {path((*prefix, seen[layer.name]))}; "
                    "give each layer its own name")
        if layer.type == "block" and layer.block not in blocks:
            guess = did_you_mean(layer.block, blocks)
            return (f"{where}: there is no block '{layer.block}' in model.blocks"
                    + (f"; did you mean '{guess}'?" if guess else f"; define it there (defined: {sorted(blocks)})"))
        for ref in layer.inputs or ():
            if ref in seen:
                used.add(seen[ref])
            elif ref == layer.name:
                return f"{where}: takes itself as input; a layer takes the outputs of layers before it"
            elif ref in later:
                return (f"{where}: input '{ref}' is {path((*prefix, later[ref]))}, a later layer; a layer takes only "
                        f"the outputs of layers before it (a graph has no cycles): move it after '{ref}'")
            elif ref != INPUT:
                guess = did_you_mean(ref, [*seen, INPUT])
                return (f"{where}: input '{ref}' names no earlier layer"
                        + (f"; did you mean '{guess}'?" if guess else "")
                        + f" (the names before it: {[*seen, INPUT]})")
        if layer.inputs is None and i:
            used.add(i - 1)
        if layer.name:
            seen[layer.name] = i
    for i, layer in enumerate(layers[:-1]):
        if i not in used:
            return (f"{_where((*prefix, i), layer)}: its output is never used (the layer after it takes other "
                    "inputs); name it in a later layer's 'inputs' (e.g. an add or concat) or remove it")
    return None


def _block_cycle(blocks: Mapping[str, Any]) -> list[str] | None:
    """A chain of blocks that uses itself (["a", "b", "a"]), or None."""
    done: set[str] = set()

    def visit(name: str, chain: list[str]) -> list[str] | None:
        if name in chain:
            return [*chain[chain.index(name):], name]
        if name in done or name not in blocks:
            return None
        for layer in blocks[name].layers:
            if layer.type == "block" and (found := visit(layer.block, [*chain, name])):
                return found
        done.add(name)
        return None

    return next((c for name in blocks if (c := visit(name, []))), None)


def graph_problem(layers: Sequence[Any], blocks: Mapping[str, Any], max_nodes: int) -> str | None:
    """What is wrong with a model's graph before any data is seen (None: nothing)."""
    if not is_graph(layers, blocks):
        return None
    problem = _scope_problem(layers, ("model", "layers"), blocks)
    for name, block in blocks.items():
        problem = problem or _scope_problem(block.layers, ("model", "blocks", name, "layers"), blocks)
    if problem:
        return problem
    cycle = _block_cycle(blocks)
    if cycle:
        return (f"model.blocks.{cycle[0]}: block '{cycle[0]}' contains itself ({' -> '.join(cycle)}); a block may use "
                "other blocks, never itself")
    sizes: dict[str, int] = {}

    def size(seq: Sequence[Any]) -> int:  # each block counted once: nested blocks multiply
        total = 0
        for layer in seq:
            if layer.type == "block" and layer.block not in sizes:
                sizes[layer.block] = size(blocks[layer.block].layers)
            total += sizes[layer.block] if layer.type == "block" else 1
        return total

    total = size(layers)
    if total > max_nodes:
        return f"model: the network has {total} layers once its blocks are expanded, more than {max_nodes}; use fewer"
    return None


def expand(layers: Sequence[Any], blocks: Mapping[str, Any]) -> list[Node]:
    """The nodes of a checked graph in the order given (a topological order: inputs come first)."""
    nodes: list[Node] = []

    def walk(seq: Sequence[Any], loc: tuple[str, ...], block: str | None, prefix: str, source: int,
             out_name: str | None) -> int:
        names, previous = {INPUT: source}, source
        for i, layer in enumerate(seq):
            taken = tuple(names[r] for r in layer.inputs) if layer.inputs else (previous,)
            name = out_name if out_name is not None and i == len(seq) - 1 else prefix + (layer.name or str(i))
            if layer.type == "block":
                slot = walk(blocks[layer.block].layers, ("model", "blocks", layer.block, "layers"), layer.block,
                            f"{name}.", taken[0], name)
            else:
                nodes.append(Node(name, layer, (*loc, i), block, taken))
                slot = len(nodes)
            if layer.name:
                names[layer.name] = slot
            previous = slot
        return previous

    walk(layers, ("model", "layers"), None, "", 0, None)
    return nodes
