"""Convert the Keras FaceNet (.h5) into an ONNX graph with h5py and onnx only.

Why our own converter: the only offline copy of FaceNet's weights is a Keras 2.1 HDF5 file,
and the usual converters (tf2onnx, keras2onnx) need TensorFlow, a 500 MB dependency that
would have to travel on the stick just to be used once. The network uses only ten layer
types, so we read the layer graph from the file's ``model_config`` JSON and the weights
from its ``model_weights`` group, and emit the equivalent ONNX nodes.

Layout: Keras stores images as NHWC; the ONNX graph takes NHWC input too (so callers feed
what they decoded), transposes once to NCHW, and runs everything else in NCHW, which is
what onnxruntime's CPU kernels are fastest at. Batch normalisation that follows a
convolution is folded into the convolution's weights here, once, instead of at every load.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SUPPORTED = {
    "InputLayer", "Conv2D", "BatchNormalization", "Activation", "MaxPooling2D",
    "Concatenate", "Lambda", "GlobalAveragePooling2D", "Dropout", "Dense",
}
OPSET = 13


class ConversionError(RuntimeError):
    """The .h5 file holds something this converter does not understand."""


class _Graph:
    """Accumulates ONNX nodes and initializers while walking the Keras layers."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


def _weights(group: h5py.Group, layer: str) -> dict[str, np.ndarray]:
    """All arrays stored for one layer, keyed by their short name ('kernel', 'beta', ...)."""
    found: dict[str, np.ndarray] = {}
    if layer not in group:
        return found

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            found[name.rsplit("/", 1)[-1].split(":")[0]] = np.asarray(obj, dtype=np.float32)

    group[layer].visititems(visit)
    return found


def _bn_affine(w: dict[str, np.ndarray], eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Batch norm at inference as y = x * a + b."""
    gamma = w.get("gamma", np.ones_like(w["moving_mean"]))
    beta = w.get("beta", np.zeros_like(w["moving_mean"]))
    a = gamma / np.sqrt(w["moving_variance"] + eps)
    return a.astype(np.float32), (beta - w["moving_mean"] * a).astype(np.float32)


def _sole_inbound(layer: dict) -> list[str]:
    nodes = layer["inbound_nodes"]
    if len(nodes) != 1:
        raise ConversionError(f"layer {layer['name']} is shared; not supported")
    return [entry[0] for entry in nodes[0]]


def convert(h5_path: Path, onnx_path: Path) -> None:
    """Write an ONNX model equivalent to the Keras model in ``h5_path``.

    The result takes ``input`` (N, H, W, 3) float32 and returns ``embedding`` (N, D).
    """
    with h5py.File(h5_path, "r") as f:
        config = json.loads(f.attrs["model_config"])
        weights = f.get("model_weights", f)
        layers = config["config"]["layers"]
        unknown = {layer["class_name"] for layer in layers} - SUPPORTED
        if unknown:
            raise ConversionError(f"unsupported Keras layers: {sorted(unknown)}")
        graph, input_shape, output = _build(layers, weights, config)
    model_input = helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)
    model_output = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", None])
    graph.nodes.append(helper.make_node("Identity", [output], ["embedding"]))
    onnx_graph = helper.make_graph(
        graph.nodes, "facenet", [model_input], [model_output], initializer=graph.inits
    )
    model = helper.make_model(
        onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="facefinder"
    )
    model.ir_version = 8  # readable by every onnxruntime >= 1.15
    onnx.checker.check_model(model)
    tmp = onnx_path.with_suffix(".partial")
    onnx.save(model, str(tmp))
    tmp.replace(onnx_path)


def _build(layers: list[dict], weights: h5py.Group, config: dict):
    """Emit ONNX nodes for each Keras layer, tracking the tensor name each layer produced."""
    g = _Graph()
    produced: dict[str, str] = {}
    rank: dict[str, int] = {}  # 4 for feature maps (NCHW), 2 after pooling
    consumers: dict[str, list[str]] = {}
    by_name = {layer["name"]: layer for layer in layers}
    for layer in layers:
        for src in (_sole_inbound(layer) if layer["inbound_nodes"] else []):
            consumers.setdefault(src, []).append(layer["name"])
    folded: set[str] = set()  # BatchNorm layers merged into the preceding conv/dense
    input_shape: list[object] = ["N", 160, 160, 3]

    for layer in layers:
        kind, name, cfg = layer["class_name"], layer["name"], layer["config"]
        if kind == "InputLayer":
            shape = cfg.get("batch_input_shape") or [None, 160, 160, 3]
            input_shape = ["N", *shape[1:]]
            produced[name] = g.node("Transpose", ["input"], name, perm=[0, 3, 1, 2])
            rank[name] = 4
            continue
        if name in folded:
            continue
        srcs = [produced[s] for s in _sole_inbound(layer)]
        w = _weights(weights, name)
        next_bn = None
        if kind in ("Conv2D", "Dense") and cfg.get("activation", "linear") == "linear":
            next_bn = _following_bn(name, consumers, by_name)
        handler: Callable[..., str] = _HANDLERS[kind]
        out = handler(g, name, cfg, srcs, w, next_bn, weights, rank, _sole_inbound(layer))
        if next_bn is not None:
            folded.add(next_bn["name"])
            produced[next_bn["name"]] = out
            rank[next_bn["name"]] = rank[name]
        produced[name] = out
    outputs = config["config"]["output_layers"]
    return g, input_shape, produced[outputs[0][0]]


def _following_bn(name: str, consumers: dict[str, list[str]], by_name: dict) -> dict | None:
    """The BatchNormalization layer that alone consumes ``name``, if any (foldable)."""
    users = consumers.get(name, [])
    if len(users) == 1 and by_name[users[0]]["class_name"] == "BatchNormalization":
        return by_name[users[0]]
    return None


def _conv(g, name, cfg, srcs, w, next_bn, weights, rank, inbound) -> str:
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise ConversionError(f"{name}: only channels_last is supported")
    if tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1):
        raise ConversionError(f"{name}: dilated convolutions are not supported")
    kernel = w["kernel"].transpose(3, 2, 0, 1)  # HWIO -> OIHW
    bias = w.get("bias", np.zeros(kernel.shape[0], np.float32))
    if next_bn is not None:
        a, b = _bn_affine(_weights(weights, next_bn["name"]), next_bn["config"]["epsilon"])
        kernel = kernel * a[:, None, None, None]
        bias = bias * a + b
    kh, kw = cfg["kernel_size"]
    sh, sw = cfg["strides"]
    pads = [0, 0, 0, 0]
    if cfg["padding"] == "same":
        if (sh, sw) != (1, 1):
            raise ConversionError(f"{name}: 'same' padding with strides is not supported")
        pads = [(kh - 1) // 2, (kw - 1) // 2, kh // 2, kw // 2]
    out = g.node(
        "Conv", [srcs[0], g.const(name + "/W", kernel), g.const(name + "/B", bias)], name,
        kernel_shape=[kh, kw], strides=[sh, sw], pads=pads,
    )
    rank[name] = 4
    return _activation(g, name, cfg.get("activation", "linear"), out)


def _activation(g, name, activation, src) -> str:
    if activation == "linear":
        return src
    if activation == "relu":
        return g.node("Relu", [src], name + "/relu")
    raise ConversionError(f"{name}: activation {activation!r} not supported")


def _batchnorm(g, name, cfg, srcs, w, next_bn, weights, rank, inbound) -> str:
    a, b = _bn_affine(w, cfg["epsilon"])
    r = rank[inbound[0]]
    shape = (1, -1, 1, 1) if r == 4 else (1, -1)
    scaled = g.node("Mul", [srcs[0], g.const(name + "/a", a.reshape(shape))], name + "/mul")
    rank[name] = r
    return g.node("Add", [scaled, g.const(name + "/b", b.reshape(shape))], name)


def _act(g, name, cfg, srcs, w, next_bn, weights, rank, inbound) -> str:
    rank[name] = rank[inbound[0]]
    if cfg["activation"] == "relu":
        return g.node("Relu", srcs, name)
    raise ConversionError(f"{name}: activation {cfg['activation']!r} not supported")


def _maxpool(g, name, cfg, srcs, w, next_bn, weights, rank, inbound) -> str:
    if cfg["padding"] != "valid":
        raise ConversionError(f"{name}: only 'valid' max pooling is supported")
    rank[name] = 4
    return g.node(
        "MaxPool", srcs, name, kernel_shape=list(cfg["pool_size"]), strides=list(cfg["strides"])
    )


def _concat(g, name, cfg, srcs, w, next_bn, weights, rank, inbound) -> str:
    if cfg["axis"] not in (3, -1):
        raise ConversionError(f"{name}: only channel concatenation is supported")
    rank[name] = 4
    return g.node("Concat", srcs, name, axis=1)


def _lambda(g, name, cfg, srcs, w, next_bn, weights, rank, inbound) -> str:
    """FaceNet's only Lambda is the residual 'scale sum': inputs[0] + inputs[1] * scale."""
    args = cfg.get("arguments") or {}
    if len(srcs) != 2 or set(args) != {"scale"}:
        raise ConversionError(f"{name}: only the residual scale-sum Lambda is supported")
    rank[name] = 4
    scale = g.const(name + "/scale", np.array(args["scale"], dtype=np.float32))
    scaled = g.node("Mul", [srcs[1], scale], name + "/mul")
    return g.node("Add", [srcs[0], scaled], name)


def _gap(g, name, cfg, srcs, w, next_bn, weights, rank, inbound) -> str:
    rank[name] = 2
    pooled = g.node("GlobalAveragePool", srcs, name + "/gap")
    return g.node("Flatten", [pooled], name, axis=1)


def _dropout(g, name, cfg, srcs, w, next_bn, weights, rank, inbound) -> str:
    rank[name] = rank[inbound[0]]
    return srcs[0]  # inference: identity


def _dense(g, name, cfg, srcs, w, next_bn, weights, rank, inbound) -> str:
    kernel = w["kernel"]  # (in, out)
    bias = w.get("bias", np.zeros(kernel.shape[1], np.float32))
    if next_bn is not None:
        a, b = _bn_affine(_weights(weights, next_bn["name"]), next_bn["config"]["epsilon"])
        kernel = kernel * a[None, :]
        bias = bias * a + b
    rank[name] = 2
    out = g.node(
        "Gemm", [srcs[0], g.const(name + "/W", kernel), g.const(name + "/B", bias)], name
    )
    return _activation(g, name, cfg.get("activation", "linear"), out)


_HANDLERS: dict[str, Callable[..., str]] = {
    "Conv2D": _conv,
    "BatchNormalization": _batchnorm,
    "Activation": _act,
    "MaxPooling2D": _maxpool,
    "Concatenate": _concat,
    "Lambda": _lambda,
    "GlobalAveragePooling2D": _gap,
    "Dropout": _dropout,
    "Dense": _dense,
}
