"""Run a TF.js graph in plain numpy, op by op, with TensorFlow's own semantics.

Why a second implementation: the ONNX converter rewrites the graph (NHWC -> NCHW, fused
ops split, "SAME" padding as ONNX auto-padding, the post-processing cut off), and each
rewrite can be subtly wrong. This runner does none of that: it evaluates the original
nodes in NHWC exactly as TensorFlow defines them, slowly and obviously. The tests compare
the converted model with it op by op on random inputs, and the whole detector with an
output it stored (``tests/data/``). It needs no TensorFlow and is never used at run time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from facefinder.models.build.tfjs_graph import Node, TfjsGraph, needed_nodes, split_ref

Op = Callable[[Node, list[np.ndarray]], list[np.ndarray]]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding of one axis: (before, after); the odd pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_hw(x: np.ndarray, kh: int, kw: int, strides: list[int], padding: str,
            value: float = 0.0) -> np.ndarray:
    """``x`` (NHWC) padded as TF pads a conv or pool's input: nothing for VALID, SAME's
    split for SAME (``value``: -inf for max pooling, so padding never wins)."""
    if padding == "VALID":
        return x
    if padding != "SAME":
        raise NotImplementedError(f"padding {padding}")
    top, bottom = same_padding(x.shape[1], kh, strides[1])
    left, right = same_padding(x.shape[2], kw, strides[2])
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _windows(x: np.ndarray, kh: int, kw: int, strides: list[int]) -> np.ndarray:
    """(N, Ho, Wo, C, kh, kw) view of the kh x kw windows at the given strides."""
    return sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::strides[1], ::strides[2]]


def _check_plain(node: Node) -> None:
    """Refuse what the reference does not compute (NCHW graphs, dilation) instead of
    returning a wrong value the converter would then be checked against."""
    if node.attrs.get("data_format", "NHWC") != "NHWC":
        raise NotImplementedError(f"{node.name}: data_format {node.attrs['data_format']}")
    if any(d != 1 for d in node.attrs.get("dilations", [1, 1, 1, 1])):
        raise NotImplementedError(f"{node.name}: dilated convolution")


def conv2d(x: np.ndarray, w: np.ndarray, strides: list[int], padding: str) -> np.ndarray:
    """NHWC input, HWIO filter."""
    kh, kw = w.shape[:2]
    win = _windows(_pad_hw(x, kh, kw, strides, padding), kh, kw, strides)
    return np.einsum("nhwcij,ijco->nhwo", win, w, optimize=True).astype(np.float32)


def depthwise_conv2d(x: np.ndarray, w: np.ndarray, strides: list[int], padding: str) -> np.ndarray:
    """NHWC input, (kh, kw, C, multiplier) filter; output channel c*multiplier + m."""
    kh, kw, channels, mult = w.shape
    win = _windows(_pad_hw(x, kh, kw, strides, padding), kh, kw, strides)
    out = np.einsum("nhwcij,ijcm->nhwcm", win, w, optimize=True)
    return out.reshape(*out.shape[:3], channels * mult).astype(np.float32)


def _activation(name: str, x: np.ndarray, node: Node) -> np.ndarray:
    """A TF activation (fused into a conv, or alone) on ``x``, as TF defines it."""
    if name == "Relu":
        return np.maximum(x, 0)
    if name == "Relu6":
        return np.clip(x, 0, 6)
    if name == "LeakyRelu":
        alpha = node.attrs.get("leakyrelu_alpha", node.attrs.get("alpha", 0.2))
        return np.where(x > 0, x, x * np.float32(alpha))
    raise NotImplementedError(f"{node.name}: fused {name}")


def _fused(conv: Callable[..., np.ndarray]) -> Op:
    """The op for a fused conv: ``conv``, then BiasAdd, then the fused activations in order."""
    def run(node: Node, args: list[np.ndarray]) -> list[np.ndarray]:
        """The fused conv on (input, filter, bias)."""
        _check_plain(node)
        fused = node.attrs.get("fused_ops", [])
        if node.attrs.get("num_args", 1) != 1 or not fused or fused[0] != "BiasAdd":
            raise NotImplementedError(f"{node.name}: fused ops {fused}")
        out = conv(args[0], args[1], node.attrs["strides"], node.attrs["padding"]) + args[2]
        for name in fused[1:]:
            out = _activation(name, out, node)
        return [out.astype(np.float32)]

    return run


def _plain_conv(conv: Callable[..., np.ndarray]) -> Op:
    """The op for an unfused conv (``conv`` with the node's strides and padding)."""
    def run(node: Node, args: list[np.ndarray]) -> list[np.ndarray]:
        """The conv on (input, filter)."""
        _check_plain(node)
        return [conv(args[0], args[1], node.attrs["strides"], node.attrs["padding"])]

    return run


def max_pool(node: Node, args: list[np.ndarray]) -> list[np.ndarray]:
    """MaxPool over TF's window and strides, SAME-padded with -inf."""
    _check_plain(node)
    _, kh, kw, _ = node.attrs["ksize"]
    strides = node.attrs["strides"]
    x = _pad_hw(args[0], kh, kw, strides, node.attrs["padding"], value=-np.inf)
    return [_windows(x, kh, kw, strides).max(axis=(4, 5)).astype(args[0].dtype)]


def resize_bilinear(node: Node, args: list[np.ndarray]) -> list[np.ndarray]:
    """tf.image.resize_bilinear with its align_corners / half_pixel_centers flags."""
    x, size = args
    align = node.attrs.get("align_corners", False)
    half = node.attrs.get("half_pixel_centers", False)

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Along one axis: each output's two source indices and the weight of the second."""
        scale = (n_in - 1) / (n_out - 1) if align and n_out > 1 else n_in / n_out
        pos = np.arange(n_out, dtype=np.float64)
        src = ((pos + 0.5) * scale - 0.5) if half else pos * scale
        src = np.maximum(src, 0.0) if half else src
        low = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, (src - np.floor(src)).astype(np.float32)

    y0, y1, fy = axis(x.shape[1], int(size[0]))
    x0, x1, fx = axis(x.shape[2], int(size[1]))
    fx = fx[None, None, :, None]
    top = x[:, y0][:, :, x0] * (1 - fx) + x[:, y0][:, :, x1] * fx
    bottom = x[:, y1][:, :, x0] * (1 - fx) + x[:, y1][:, :, x1] * fx
    fy = fy[None, :, None, None]
    return [(top * (1 - fy) + bottom * fy).astype(np.float32)]


def strided_slice(node: Node, args: list[np.ndarray]) -> list[np.ndarray]:
    """StridedSlice with begin, end and shrink-axis masks (the ones the exports use)."""
    x, begin, end, step = args
    if node.attrs.get("ellipsis_mask", 0) or node.attrs.get("new_axis_mask", 0):
        raise NotImplementedError(f"{node.name}: ellipsis/new-axis masks")
    begin_mask = node.attrs.get("begin_mask", 0)
    end_mask = node.attrs.get("end_mask", 0)
    shrink = node.attrs.get("shrink_axis_mask", 0)
    index: list[Any] = []
    for axis in range(len(begin)):
        if shrink >> axis & 1:
            index.append(int(begin[axis]))
            continue
        start = None if begin_mask >> axis & 1 else int(begin[axis])
        stop = None if end_mask >> axis & 1 else int(end[axis])
        index.append(slice(start, stop, int(step[axis])))
    return [x[tuple(index)]]


def top_k(node: Node, args: list[np.ndarray]) -> list[np.ndarray]:
    """Largest k along the last axis, ties broken by lower index (as TensorFlow does)."""
    x, k = args[0], int(args[1])
    order = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    return [np.take_along_axis(x, order, axis=-1), order.astype(np.int32)]


def _pad(node: Node, args: list[np.ndarray]) -> list[np.ndarray]:
    """Pad / PadV2: constant padding, per-axis (before, after) pairs as TF gives them."""
    value = args[2] if len(args) > 2 else 0
    return [np.pad(args[0], np.asarray(args[1]).astype(np.int64), constant_values=value)]


def _split_v(node: Node, args: list[np.ndarray]) -> list[np.ndarray]:
    """SplitV: pieces of the given sizes along an axis (one size may be -1: the rest)."""
    x, sizes, axis = args[0], [int(s) for s in args[1]], int(args[2])
    if -1 in sizes:
        sizes[sizes.index(-1)] = x.shape[axis] - (sum(sizes) + 1)
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


def _cast(node: Node, args: list[np.ndarray]) -> list[np.ndarray]:
    """Cast to the node's DstT (the types the converter maps too)."""
    target = {"DT_FLOAT": np.float32, "DT_INT32": np.int32, "DT_BOOL": np.bool_}
    return [args[0].astype(target[node.attrs["DstT"]])]


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Op:
    """The op for an element-wise TF op of two operands, with numpy's (= TF's) broadcasting."""
    return lambda node, args: [np.asarray(fn(args[0], args[1]))]


OPS: dict[str, Op] = {
    "Identity": lambda node, args: [args[0]],
    "Add": _binary(np.add),
    "AddV2": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "FloorDiv": _binary(np.floor_divide),
    "FloorMod": _binary(np.mod),
    "Equal": _binary(np.equal),
    "Relu": lambda node, args: [np.maximum(args[0], 0)],
    "Relu6": lambda node, args: [np.clip(args[0], 0, 6)],
    "LeakyRelu": lambda node, args: [_activation("LeakyRelu", args[0], node)],
    "Transpose": lambda node, args: [np.transpose(args[0], [int(p) for p in args[1]])],
    "Pad": _pad,
    "PadV2": _pad,
    "SplitV": _split_v,
    "Sigmoid": lambda node, args: [(1 / (1 + np.exp(-args[0]))).astype(np.float32)],
    "Mean": lambda node, args: [np.mean(
        args[0], axis=tuple(int(a) for a in np.atleast_1d(args[1])),
        keepdims=node.attrs.get("keep_dims", False)).astype(args[0].dtype)],
    "ConcatV2": lambda node, args: [np.concatenate(args[:-1], axis=int(args[-1]))],
    "Reshape": lambda node, args: [args[0].reshape(tuple(int(d) for d in args[1]))],
    "ExpandDims": lambda node, args: [np.expand_dims(args[0], int(args[1]))],
    "Cast": _cast,
    "GatherV2": lambda node, args: [np.take(args[0], args[1], axis=int(args[2]))],
    "StridedSlice": strided_slice,
    "TopKV2": top_k,
    "Conv2D": _plain_conv(conv2d),
    "DepthwiseConv2dNative": _plain_conv(depthwise_conv2d),
    "_FusedConv2D": _fused(conv2d),
    "FusedDepthwiseConv2dNative": _fused(depthwise_conv2d),
    "MaxPool": max_pool,
    "ResizeBilinear": resize_bilinear,
}


def evaluate(graph: TfjsGraph, feeds: dict[str, np.ndarray],
             outputs: list[str]) -> dict[str, list[np.ndarray]]:
    """Every value computed on the way to ``outputs``: {node name: [its outputs]}."""
    values: dict[str, list[np.ndarray]] = {}
    for node in needed_nodes(graph, outputs):
        if node.op == "Const":
            values[node.name] = [graph.weights[node.name]]
        elif node.op == "Placeholder":
            values[node.name] = [np.asarray(feeds[node.name], dtype=np.float32)]
        elif node.op in OPS:
            args = [values[name][index] for name, index in map(split_ref, node.inputs)]
            values[node.name] = OPS[node.op](node, args)
        else:
            raise NotImplementedError(f"{node.name}: op {node.op} has no numpy reference")
    return values


def run(graph: TfjsGraph, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
    """Evaluate ``outputs`` (``node`` or ``node:k``) of ``graph`` for the given inputs."""
    values = evaluate(graph, feeds, outputs)
    return [values[name][index] for name, index in map(split_ref, outputs)]
