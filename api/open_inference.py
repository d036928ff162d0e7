"""The Open Inference Protocol's tensors (KServe V2, Triton; REST): an infer request read into
numpy arrays, as JSON or with the binary tensor data extension, and its response written.

A request is JSON, or (binary extension) JSON of `Inference-Header-Content-Length` bytes
followed by each input's raw little-endian bytes, in order, sized by its
`parameters.binary_data_size`. An output is sent as binary when its `parameters.binary_data`
or the request's `parameters.binary_data_output` asks (tritonclient asks by default).
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.errors import ApiError, describe, json_error, validation_details

# the protocol's datatypes (BYTES: strings, only for outputs here)
DTYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}


class ProtocolError(BaseModel):
    """Every error of /v2: the protocol's form (the same sentence netfit's `message` holds)."""
    error: str


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for the batch dimension, which comes first")


class InputTensor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = Field(None, description="row-major, flat or nested; absent when sent as binary")


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InputTensor] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its $defs inlined (for an OpenAPI requestBody of its own)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.rsplit("/", 1)[-1]])
            return {k: inline(v) for k, v in node.items()}
        return [inline(v) for v in node] if isinstance(node, list) else node
    return inline(schema)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def read_request(body: bytes, header_length: str | None) -> tuple[InferRequest, dict[str, np.ndarray]]:
    """The request and its inputs by name, each an array of its declared datatype and shape."""
    size = len(body)
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > size:
            raise bad_request(f"Inference-Header-Content-Length is {header_length!r}, but the body has {size} bytes")
        size = int(header_length)
    try:
        request = InferRequest.model_validate(json.loads(body[:size]))
    except json.JSONDecodeError as exc:
        raise bad_request(json_error(body[:size], exc.pos, exc.msg)) from None
    except ValidationError as exc:
        raise bad_request(describe(validation_details(list(exc.errors())), "the infer request is invalid")) from None
    arrays, offset = {}, size
    for tensor in request.inputs:
        array, offset = _input_array(tensor, body, offset)
        arrays[tensor.name] = array
    if offset != len(body):
        raise bad_request(f"the body has {len(body) - offset} bytes after the inputs' binary data")
    return request, arrays


def _input_array(tensor: InputTensor, body: bytes, offset: int) -> tuple[np.ndarray, int]:
    name = f"input '{tensor.name}'"
    dtype = DTYPES.get(tensor.datatype)
    if dtype is None:
        raise bad_request(f"{name} has datatype {tensor.datatype!r}; the numeric datatypes are {', '.join(DTYPES)}")
    if any(d < 0 for d in tensor.shape):
        raise bad_request(f"{name} has shape {tensor.shape}; a request's shape has no negative dimension")
    count = math.prod(tensor.shape)
    binary_size = (tensor.parameters or {}).get("binary_data_size")
    if binary_size is not None:
        if tensor.data is not None or not isinstance(binary_size, int) or binary_size < 0:
            raise bad_request(f"{name}: binary_data_size must be a byte count and the input then has no 'data'")
        if offset + binary_size > len(body):
            raise bad_request(f"{name} says {binary_size} bytes of binary data, but the body has {len(body) - offset} left")
        raw = body[offset:offset + binary_size]
        offset += binary_size
        itemsize = np.dtype(dtype).itemsize
        if binary_size != count * itemsize:
            raise bad_request(f"{name} has {binary_size} bytes of binary data, but shape {tensor.shape} of "
                              f"{tensor.datatype} takes {count * itemsize}")
        return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(tensor.shape), offset
    if tensor.data is None:
        raise bad_request(f"{name} has no 'data' (and no binary_data_size)")
    try:
        array = np.asarray(tensor.data, dtype=dtype)
    except (ValueError, TypeError, OverflowError):
        raise bad_request(f"{name}'s data cannot be read as {tensor.datatype}: send numbers of that type, "
                          "row-major, flat or nested evenly") from None
    if array.size != count:
        raise bad_request(f"{name} has {array.size} values in 'data', but its shape {tensor.shape} takes {count}")
    return array.reshape(tensor.shape), offset


def wants_binary(request: InferRequest, output: str) -> bool:
    asked = next((o for o in request.outputs or [] if o.name == output), None)
    if asked is not None and asked.parameters and "binary_data" in asked.parameters:
        return bool(asked.parameters["binary_data"])
    return bool((request.parameters or {}).get("binary_data_output", False))


def _bytes_elements(values: np.ndarray) -> bytes:
    # the binary form of BYTES: each element as a 4-byte little-endian length, then its bytes
    return b"".join(struct.pack("<I", len(b)) + b for b in (str(v).encode() for v in values.reshape(-1)))


def write_response(head: dict[str, Any], tensors: list[tuple[str, str, np.ndarray]], binary: set[str]
                   ) -> tuple[bytes, dict[str, str], str]:
    """(body, headers, media type): the response JSON with `outputs`, followed by the binary
    data of the outputs named in `binary`."""
    from api.errors import render_json

    outputs, chunks = [], []
    for name, datatype, values in tensors:
        out: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(values.shape)}
        if name in binary:
            raw = _bytes_elements(values) if datatype == "BYTES" else values.astype(values.dtype.newbyteorder("<")).tobytes()
            out["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            out["data"] = values.reshape(-1).tolist()
        outputs.append(out)
    header = render_json({**head, "outputs": outputs})
    if not chunks:
        return header, {}, "application/json"
    return header + b"".join(chunks), {"Inference-Header-Content-Length": str(len(header))}, "application/octet-stream"
