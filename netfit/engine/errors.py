"""The two errors the engine raises for bad input; both carry a message a person can act on."""

from __future__ import annotations

from typing import Any


class SpecError(ValueError):
    """A job spec that cannot work with its data. `errors` holds every problem found, each as
    {"loc": path into the spec, e.g. ["model", "layers", 3, "units"], "msg": what to change},
    the shape of pydantic's errors so that the API reports both kinds alike."""

    def __init__(self, errors: list[dict[str, Any]]):
        self.errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in errors]
        super().__init__("; ".join(e["msg"] for e in self.errors))

    @classmethod
    def at(cls, loc: list[str | int], msg: str) -> SpecError:
        return cls([{"loc": loc, "msg": msg}])


class DataError(ValueError):
    """A data set that cannot be read or used: the message names the file, column or array."""


class UnsupportedFile(DataError):
    """A file netfit will not read at all: a pickle, a compressed or an unknown format."""
