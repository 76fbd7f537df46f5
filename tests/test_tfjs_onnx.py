"""The TF.js -> ONNX converter and the object detector built with it.

Three layers, each checked against something independent of the layer above:

* the numpy reference runner (``tfjs_reference``) against hand-written loops and known
  TensorFlow values (padding, bilinear resize);
* every op the converter handles: a one-op TF.js graph converted and run by onnxruntime
  versus the reference runner on random inputs (and at a second input size, which is how
  the detector runs);
* the whole CenterNet: the fetched ONNX file versus ``tests/data/centernet_chelsea.npz``,
  the output of the *unconverted* graph (its own TopKV2 decoding included) computed by the
  reference runner (regenerate with ``PYTHONPATH=. python tests/test_tfjs_onnx.py``); and
  the detector finding the cat in scikit-image's chelsea.png and the person in astronaut.png.

The alternative detector, YOLOv8n (an ONNX file in an npm package, cut by
``models/build/yolov8.py``), is checked the same way: its decoding against hand-made
maps with known boxes, and the built file against ``tests/data/yolov8n_chelsea.npz``, the
*published, uncut* graph's own decoded output for chelsea (regenerate with
``PYTHONPATH=. python tests/test_tfjs_onnx.py yolo PUBLISHED.onnx``).
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from facefinder.models import catalog
from facefinder.models.build import tfjs_reference as ref
from facefinder.models.build.tfjs_graph import Node, TfjsFormatError, TfjsGraph, load_graph
from facefinder.models.build.tfjs_onnx import UnsupportedGraph, convert
from facefinder.pypi import FetchError
from facefinder.vision.objects import COCO_CLASSES as COCO

DATA = Path(__file__).resolve().parent / "data"
REFERENCE = DATA / "centernet_chelsea.npz"
YOLO_REFERENCE = DATA / "yolov8n_chelsea.npz"
ROOT = Path(__file__).resolve().parent.parent


# --- building one-op graphs ------------------------------------------------------------

class GraphMaker:
    """Builds a small TfjsGraph node by node, with random constants."""

    def __init__(self, shape: tuple[int, ...], seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: dict[str, Node] = {"x": Node("x", "Placeholder", (), {"shape": shape})}
        self.weights: dict[str, np.ndarray] = {}
        self.shape = shape

    def const(self, value: np.ndarray) -> str:
        name = f"c{len(self.weights)}"
        self.nodes[name] = Node(name, "Const", ())
        self.weights[name] = np.asarray(value)
        return name

    def random(self, *shape: int) -> str:
        return self.const(self.rng.normal(0, 0.5, shape).astype(np.float32))

    def op(self, op: str, *inputs: str, **attrs: object) -> str:
        name = f"n{len(self.nodes)}"
        self.nodes[name] = Node(name, op, tuple(inputs), dict(attrs))
        return name

    def graph(self) -> TfjsGraph:
        return TfjsGraph(self.nodes, self.weights, ("x",), {"x": self.shape})


def conv_attrs(stride: int = 1, padding: str = "SAME", fused: tuple[str, ...] = ()) -> dict:
    attrs: dict = {"strides": [1, stride, stride, 1], "padding": padding,
                   "dilations": [1, 1, 1, 1], "data_format": "NHWC"}
    if fused:
        attrs.update(fused_ops=list(fused), num_args=1)
    return attrs


def run_onnx(graph: TfjsGraph, out: str, x: np.ndarray, nchw: bool = False) -> np.ndarray:
    model = convert(graph, {"y": out}, nchw_input=nchw)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = x.transpose(0, 2, 3, 1) if nchw else x  # the ONNX model always takes NHWC
    return session.run(None, {"input": feed.astype(np.float32)})[0]


def build_case(case: str, size: tuple[int, int]) -> tuple[TfjsGraph, str, bool]:
    """One-op (or few-op) graph named ``case`` for an NHWC input of ``size`` (4 channels)."""
    h, w = size
    g = GraphMaker((1, h, w, 4))
    x = "x"
    if case.startswith("fused_conv"):
        stride, padding, act = {"fused_conv_s2_relu": (2, "SAME", ("Relu",)),
                                "fused_conv_valid": (1, "VALID", ()),
                                "fused_conv_relu6": (1, "SAME", ("Relu6",)),
                                "fused_conv_leaky": (2, "SAME", ("LeakyRelu",))}[case]
        kernel = 1 if padding == "VALID" else 3
        out = g.op("_FusedConv2D", x, g.random(kernel, kernel, 4, 6), g.random(6),
                   **conv_attrs(stride, padding, ("BiasAdd", *act)), leakyrelu_alpha=0.1)
    elif case == "conv":
        out = g.op("Conv2D", x, g.random(3, 3, 4, 5), **conv_attrs(1))
    elif case == "fused_depthwise_s2":
        out = g.op("FusedDepthwiseConv2dNative", x, g.random(3, 3, 4, 1), g.random(4),
                   **conv_attrs(2, "SAME", ("BiasAdd", "Relu")))
    elif case == "depthwise_multiplier":
        out = g.op("DepthwiseConv2dNative", x, g.random(5, 5, 4, 2), **conv_attrs(1))
    elif case in ("add_channel", "mul_channel", "sub_scalar", "addv2_tensors"):
        other = {"add_channel": g.random(4), "mul_channel": g.random(1, 1, 1, 4),
                 "sub_scalar": g.const(np.float32(3.0)), "addv2_tensors": g.op("Relu", x)}[case]
        op = {"add": "Add", "mul": "Mul", "sub": "Sub", "addv2": "AddV2"}[case.split("_")[0]]
        out = g.op(op, other, x) if case == "mul_channel" else g.op(op, x, other)
    elif case in ("relu", "relu6", "sigmoid", "identity"):
        out = g.op({"relu": "Relu", "relu6": "Relu6", "sigmoid": "Sigmoid",
                    "identity": "Identity"}[case], g.op("Mul", x, g.const(np.float32(4))))
    elif case == "leaky_relu":
        out = g.op("LeakyRelu", x, alpha=0.1)
    elif case == "mean_se":  # squeeze-and-excite: Mean over H, W then a broadcast multiply
        mean = g.op("Mean", x, g.const(np.array([1, 2], np.int32)), keep_dims=True)
        out = g.op("Mul", g.op("Sigmoid", mean), x)
    elif case == "concat":
        out = g.op("ConcatV2", x, g.op("Relu", x), g.const(np.int32(-1)))
    elif case.startswith("resize"):
        out = g.op("ResizeBilinear", x, g.const(np.array([2 * h, 2 * w], np.int32)),
                   align_corners=False, half_pixel_centers=case == "resize_half_pixel")
    elif case == "max_pool_same":
        out = g.op("MaxPool", x, ksize=[1, 3, 3, 1], **conv_attrs(1))
    elif case == "max_pool_valid_s2":
        out = g.op("MaxPool", x, ksize=[1, 3, 3, 1], **conv_attrs(2, "VALID"))
    elif case == "peaks":  # CenterNet's peak mask: x * (x == maxpool3x3(x))
        pooled = g.op("MaxPool", x, ksize=[1, 3, 3, 1], **conv_attrs(1))
        mask = g.op("Cast", g.op("Equal", x, pooled), DstT="DT_FLOAT")
        out = g.op("Mul", x, mask)
    elif case in ("nchw_pad_conv", "nchw_padv2_pool", "nchw_split"):
        # Graphs exported from PyTorch: NCHW input, Transposes around every NHWC op.
        g = GraphMaker((1, 4, h, w))
        if case == "nchw_split":
            parts = g.op("SplitV", "x", g.const(np.array([1, -1], np.int32)), g.const(np.int32(1)))
            out = g.op("Sigmoid", f"{parts}:1")
            return g.graph(), out, True
        pads = g.const(np.array([[0, 0], [0, 0], [1, 1], [1, 1]], np.int32))
        if case == "nchw_pad_conv":
            padded = g.op("Pad", "x", pads)
        else:
            padded = g.op("PadV2", "x", pads, g.const(np.float32(-np.inf)))
        nhwc = g.op("Transpose", padded, g.const(np.array([0, 2, 3, 1], np.int32)))
        if case == "nchw_pad_conv":
            inner = g.op("Add", g.op("Conv2D", nhwc, g.random(3, 3, 4, 3),
                                     **conv_attrs(2, "VALID")), g.random(3))
        else:
            inner = g.op("MaxPool", nhwc, ksize=[1, 3, 3, 1], **conv_attrs(2, "VALID"))
        out = g.op("LeakyRelu", g.op("Transpose", inner, g.const(np.array([0, 3, 1, 2], np.int32))),
                   alpha=0.1)
        return g.graph(), out, True
    else:
        raise AssertionError(case)
    return g.graph(), out, False


CASES = ["fused_conv_s2_relu", "fused_conv_valid", "fused_conv_relu6", "fused_conv_leaky", "conv",
         "fused_depthwise_s2", "depthwise_multiplier", "add_channel", "mul_channel", "sub_scalar",
         "addv2_tensors", "relu", "relu6", "sigmoid", "identity", "leaky_relu", "mean_se",
         "concat", "resize_asymmetric", "resize_half_pixel", "max_pool_same",
         "max_pool_valid_s2", "peaks", "nchw_pad_conv", "nchw_padv2_pool", "nchw_split"]


@pytest.mark.parametrize("case", CASES)
def test_each_op_matches_the_numpy_reference(case: str) -> None:
    """Converted and run by onnxruntime, every op gives what TensorFlow's semantics give,
    at the declared size and at another one (odd sizes exercise "SAME" padding)."""
    for size in ((13, 11), (24, 18)):
        graph, out, nchw = build_case(case, size)
        x = np.random.default_rng(1).normal(0, 2, graph.input_shapes["x"]).astype(np.float32)
        expected = ref.run(graph, {"x": x}, [out])[0]
        got = run_onnx(graph, out, x, nchw)
        if not nchw and got.ndim == 4 and expected.ndim == 4:
            assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=case)


def test_any_input_size_after_conversion() -> None:
    """A resize frozen at the declared size still doubles at another size (scales, not sizes)."""
    graph, out, _ = build_case("resize_asymmetric", (8, 8))
    other, out_other, _ = build_case("resize_asymmetric", (20, 12))
    x = np.random.default_rng(2).normal(size=(1, 20, 12, 4)).astype(np.float32)
    expected = ref.run(other, {"x": x}, [out_other])[0]
    np.testing.assert_allclose(run_onnx(graph, out, x), expected, rtol=1e-5, atol=1e-5)


def test_unsupported_op_is_named() -> None:
    g = GraphMaker((1, 8, 8, 4))
    out = g.op("Softplus", "x")
    with pytest.raises(UnsupportedGraph, match="Softplus"):
        convert(g.graph(), {"y": out})


# --- the numpy reference itself --------------------------------------------------------

def test_reference_padding_is_tensorflows() -> None:
    """TF's SAME: total = (ceil(n/s) - 1) * s + k - n, the odd pixel after."""
    assert ref.same_padding(512, 3, 2) == (0, 1)
    assert ref.same_padding(13, 3, 2) == (1, 1)
    assert ref.same_padding(10, 5, 1) == (2, 2)
    assert ref.same_padding(8, 1, 2) == (0, 0)


def test_reference_conv_against_loops() -> None:
    """conv2d and depthwise_conv2d equal the textbook sums over explicit loops."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 7, 6, 3)).astype(np.float32)
    w = rng.normal(size=(3, 3, 3, 2)).astype(np.float32)
    dw = rng.normal(size=(3, 3, 3, 2)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))  # SAME, stride 1, 3x3
    loops = np.zeros((1, 7, 6, 2), np.float32)
    depth = np.zeros((1, 7, 6, 6), np.float32)
    for i in range(7):
        for j in range(6):
            window = padded[0, i:i + 3, j:j + 3]
            for o in range(2):
                loops[0, i, j, o] = np.sum(window * w[:, :, :, o])
            for c in range(3):
                for m in range(2):
                    depth[0, i, j, c * 2 + m] = np.sum(window[:, :, c] * dw[:, :, c, m])
    np.testing.assert_allclose(ref.conv2d(x, w, [1, 1, 1, 1], "SAME"), loops, atol=1e-5)
    np.testing.assert_allclose(ref.depthwise_conv2d(x, dw, [1, 1, 1, 1], "SAME"), depth, atol=1e-5)


def test_reference_resize_known_values() -> None:
    """1-D [0, 10] to 4 samples: legacy TF gives 0, 5, 10, 10; half-pixel 0, 2.5, 7.5, 10."""
    x = np.array([0.0, 10.0], np.float32).reshape(1, 1, 2, 1)
    size = np.array([1, 4], np.int32)
    legacy = Node("r", "ResizeBilinear", (), {"align_corners": False, "half_pixel_centers": False})
    half = Node("r", "ResizeBilinear", (), {"align_corners": False, "half_pixel_centers": True})
    corners = Node("r", "ResizeBilinear", (), {"align_corners": True, "half_pixel_centers": False})
    assert ref.resize_bilinear(legacy, [x, size])[0].ravel().tolist() == [0, 5, 10, 10]
    assert ref.resize_bilinear(half, [x, size])[0].ravel().tolist() == [0, 2.5, 7.5, 10]
    np.testing.assert_allclose(ref.resize_bilinear(corners, [x, size])[0].ravel(),
                               [0, 10 / 3, 20 / 3, 10], rtol=1e-6)


# --- the TF.js format -------------------------------------------------------------------

def _write_model(folder: Path, extra: bytes = b"") -> dict[str, np.ndarray]:
    """A model.json with a float16-, a uint8-quantised, an int32 and a float32 weight."""
    half = np.array([1.5, -2.25, 1000.0], np.float16)
    quant = np.array([0, 128, 255], np.uint8)
    ints = np.array([[1, -2], [3, 4]], np.int32)
    floats = np.array([0.1], np.float32)
    (folder / "group1-shard1of2.bin").write_bytes(half.tobytes() + quant.tobytes())
    (folder / "group1-shard2of2.bin").write_bytes(ints.tobytes() + floats.tobytes() + extra)
    weights = [
        {"name": "h", "shape": [3], "dtype": "float32", "quantization": {"dtype": "float16"}},
        {"name": "q", "shape": [3], "dtype": "float32",
         "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
        {"name": "i", "shape": [2, 2], "dtype": "int32"},
        {"name": "f", "shape": [], "dtype": "float32"},
    ]
    nodes = [{"name": n, "op": "Const", "attr": {}} for n in "hqif"]
    nodes.append({"name": "x", "op": "Placeholder",
                  "attr": {"shape": {"shape": {"dim": [{"size": "1"}, {"size": "4"}]}}}})
    model = {"format": "graph-model", "modelTopology": {"node": nodes},
             "weightsManifest": [{"paths": ["group1-shard1of2.bin", "group1-shard2of2.bin"],
                                  "weights": weights}]}
    (folder / "model.json").write_text(json.dumps(model), encoding="utf-8")
    return {"h": half.astype(np.float32), "q": quant * 0.5 - 1.0, "i": ints,
            "f": floats.reshape(())}


def test_weights_are_decoded_and_dequantised(tmp_path: Path) -> None:
    expected = _write_model(tmp_path)
    graph = load_graph(tmp_path / "model.json")
    assert graph.inputs == ("x",) and graph.input_shapes["x"] == (1, 4)
    for name, value in expected.items():
        assert graph.weights[name].shape == value.shape
        np.testing.assert_allclose(graph.weights[name], value)
    assert graph.weights["i"].dtype == np.int32 and graph.weights["h"].dtype == np.float32


def test_shards_with_bytes_left_over_are_refused(tmp_path: Path) -> None:
    _write_model(tmp_path, extra=b"\0\0\0\0")
    with pytest.raises(TfjsFormatError, match="left over"):
        load_graph(tmp_path / "model.json")


# --- npm: safe extraction, fetched only when asked for -----------------------------------

def test_extract_takes_only_named_regular_files(tmp_path: Path) -> None:
    from facefinder.models.npm import extract

    archive = tmp_path / "p.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in [("package/models/a.json", b"{}"), ("../escape", b"x"),
                           ("package/other", b"y")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("package/models/link.bin")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    out = tmp_path / "out"
    extract(archive, {"package/models/a.json": out / "a.json"})
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.json", "p.tgz"]
    with pytest.raises(FetchError, match="not a regular file"):
        extract(archive, {"package/models/link.bin": out / "link.bin"})
    with pytest.raises(FetchError, match="lacks"):
        extract(archive, {"package/models/none.bin": out / "none.bin"})
    assert not (out / "link.bin").exists()
    # A member whose sha256 is pinned must be that file, or nothing is written.
    with pytest.raises(FetchError, match="not the pinned file"):
        extract(archive, {"package/other": out / "other"}, {"package/other": "0" * 64})
    assert not (out / "other").exists() and not list(out.glob(".*partial"))
    extract(archive, {"package/other": out / "other"},
            {"package/other": "a1fce4363854ff888cff4b8e7875d600c2682390412a8cf79b37d0b11148b0fa"})
    assert (out / "other").read_bytes() == b"y"


def test_every_object_detector_has_a_source_and_a_decoding() -> None:
    from facefinder.models.npm import pinned_members
    from facefinder.vision.objects import FAMILIES, OBJECT_MODEL, OBJECT_MODELS

    assert OBJECT_MODEL in OBJECT_MODELS.values()
    for spec in OBJECT_MODELS.values():
        source = catalog.SOURCES[catalog.OBJECT_SOURCES[spec.file]]
        assert spec.file in source.produces and spec.file in FAMILIES
        assert isinstance(source.pin, catalog.NpmPin)
        assert set(pinned_members(source.pin)) == set(source.pin.members)  # each one pinned


def test_object_model_is_not_fetched_without_permission(tmp_path: Path) -> None:
    from facefinder.models.fetch import ensure_object_model

    with pytest.raises(catalog.ModelsMissing):
        ensure_object_model(tmp_path, allow_fetch=False)
    with pytest.raises(catalog.ModelsMissing, match="objects-yolov8n"):
        ensure_object_model(tmp_path, allow_fetch=False, file=catalog.YOLOV8N_FILE)
    assert list(tmp_path.iterdir()) == []


# --- the whole detector ------------------------------------------------------------------

@pytest.fixture(scope="session")
def object_models() -> Path:
    """The program's models folder with the object detector (fetched from npm on first use)."""
    from facefinder.models.fetch import ensure_object_model

    models = ROOT / "models"
    ensure_object_model(models, allow_fetch=True)
    return models


def chelsea_canvas() -> np.ndarray:
    """chelsea.png at the top left of a black 512x512 canvas: the reference input."""
    from PIL import Image
    from testdata import skimage_photo

    photo = np.asarray(Image.open(skimage_photo("chelsea")).convert("RGB"))
    canvas = np.zeros((1, 512, 512, 3), np.float32)
    canvas[0, :photo.shape[0], :photo.shape[1]] = photo
    return canvas


def top_detections(peaks: np.ndarray, wh: np.ndarray, k: int = 100) -> np.ndarray:
    """The TF.js graph's own decoding (TopKV2 over the peaks, boxes at stride 4) in numpy."""
    flat = peaks[0].reshape(-1)
    order = np.argsort(-flat, kind="stable")[:k]
    cells, classes = order // peaks.shape[3], order % peaks.shape[3]
    ys, xs = cells // peaks.shape[2], cells % peaks.shape[2]
    sides = wh[0, ys, xs]
    boxes = np.stack([xs * 4 - sides[:, 0], ys * 4 - sides[:, 1],
                      xs * 4 + sides[:, 2], ys * 4 + sides[:, 3]], 1)
    return np.concatenate([boxes, flat[order][:, None], classes[:, None]], 1)


def test_converted_centernet_matches_the_unconverted_graph(object_models: Path) -> None:
    """The fetched ONNX file reproduces the TF.js graph's own detections (stored)."""
    stored = np.load(REFERENCE)["detections"][0]
    session = ort.InferenceSession(str(object_models / catalog.CENTERNET_FILE),
                                   providers=["CPUExecutionProvider"])
    peaks, wh = session.run(None, {"input": chelsea_canvas()})
    got = top_detections(peaks, wh)
    confident = stored[stored[:, 4] > 0.05]
    assert len(confident) >= 3 and confident[0, 5] == 15  # the graph itself says cat first
    for row in confident:
        same = got[(got[:, 5] == row[5]) & (np.abs(got[:, 4] - row[4]) < 2e-3)]
        assert len(same), f"no converted detection like {row}"
        assert np.abs(same[:, :4] - row[:4]).max(axis=1).min() < 0.5


def test_detector_finds_the_cat_and_the_astronaut(object_models: Path) -> None:
    from PIL import Image
    from testdata import skimage_photo

    from facefinder.vision.objects import OBJECT_MODEL, load_object_detector

    detector = load_object_detector(OBJECT_MODEL, object_models)
    cat = np.asarray(Image.open(skimage_photo("chelsea")).convert("RGB"))
    found = detector.detect(cat)
    assert found and found[0].label == "cat", [(d.label, d.score) for d in found]
    x1, y1, x2, y2 = found[0].box
    assert x1 < 451 / 2 < x2 and y1 < 300 / 2 < y2  # the cat fills the photo
    assert found[0].box.dtype == np.float32 and x1 >= 0 and x2 <= 451 and y2 <= 300
    astronaut = np.asarray(Image.open(skimage_photo("astronaut")).convert("RGB"))
    people = [d for d in detector.detect(astronaut) if d.label == "person"]
    assert people and people[0].score >= OBJECT_MODEL.score_threshold
    # Twice the pixels: same cat, boxes in the bigger photo's pixels.
    big = np.repeat(np.repeat(cat, 2, axis=0), 2, axis=1)
    again = detector.detect(big)
    assert again[0].label == "cat"
    np.testing.assert_allclose(again[0].box / 2, found[0].box, atol=12)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="unshare is Linux-only")
def test_objects_need_no_network_once_fetched(object_models: Path, models_dir: Path,
                                              tmp_path: Path) -> None:
    """``--objects`` after the fetch: no network namespace at all, and the cat is found."""
    import shutil
    import subprocess

    from testdata import skimage_photo

    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(skimage_photo("chelsea"), photos / "chelsea.png")
    report = tmp_path / "r.json"
    done = subprocess.run(
        ["unshare", "-n", sys.executable, str(ROOT / "finder.py"), str(photos), "--objects",
         "--no-index", "--models", str(object_models), "--json", str(report), "--no-progress"],
        capture_output=True, text=True, env={**os.environ, "PIP_NO_INDEX": "1"}, timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    files = json.loads(report.read_text(encoding="utf-8"))["objects"]
    assert [f["path"] for f in files] == ["chelsea.png"]
    assert files[0]["objects"][0]["class"] == "cat"


def test_small_photos_run_at_their_own_size() -> None:
    from facefinder.vision.objects import network_input

    blob, scale = network_input(np.zeros((250, 250, 3), np.uint8), 512)
    assert blob.shape == (1, 256, 256, 3) and scale == (1.0, 1.0)
    blob, scale = network_input(np.full((3000, 4000, 3), 200, np.uint8), 512)
    assert blob.shape == (1, 384, 512, 3) and scale == pytest.approx((512 / 4000, 384 / 3000))
    assert np.allclose(blob[0, :384, :512], 200)
    # a very wide photo: the two sides round differently, so boxes map back apart
    _blob, (across, down) = network_input(np.zeros((20, 4000, 3), np.uint8), 512)
    assert across == pytest.approx(512 / 4000) and down == pytest.approx(3 / 20)


# --- YOLOv8n: decoding, and the built file against the published graph -----------------

def yolo_level(h: int, w: int) -> np.ndarray:
    """A (144, h, w) map that says nothing: every class logit very negative."""
    level = np.zeros((144, h, w), np.float32)
    level[64:] = -20
    return level


def test_yolo_decoding_of_known_cells() -> None:
    from facefinder.vision.objects import decode_yolo

    levels = [yolo_level(8, 10), yolo_level(4, 5), yolo_level(2, 3)]  # a 64 x 80 input
    # stride 8, cell (row 2, col 3): a dog, sides 1, 2, 3, 4 cells (one bin each)
    for side, distance in enumerate((1, 2, 3, 4)):
        levels[0][side * 16 + distance, 2, 3] = 30
    levels[0][64 + 16, 2, 3] = 2.0  # dog, sigmoid(2) = 0.881
    # stride 32, cell (0, 1): a cat whose left side is half-way between bins 2 and 3
    levels[2][0 * 16 + 2, 0, 1] = levels[2][0 * 16 + 3, 0, 1] = 30
    for side in (1, 2, 3):
        levels[2][side * 16 + 1, 0, 1] = 30
    levels[2][64 + 15, 0, 1] = 0.0  # cat at 0.5
    found = decode_yolo(levels, 0.25, (0.5, 0.5), 160, 128)  # network input = half the photo
    assert [(d.label, round(d.score, 3)) for d in found] == [("dog", 0.881), ("cat", 0.5)]
    centre = np.array([3.5, 2.5]) * 8
    expect = np.array([centre[0] - 8, centre[1] - 16, centre[0] + 24, centre[1] + 32]) * 2
    np.testing.assert_allclose(found[0].box, expect, atol=1e-3)
    np.testing.assert_allclose(found[1].box, np.array([1.5 - 2.5, 0.5 - 1, 1.5 + 1, 0.5 + 1])
                               .clip(0) * 32 * 2, atol=1e-3)
    assert decode_yolo(levels, 0.9, (0.5, 0.5), 160, 128) == []


def yolo_canvas() -> np.ndarray:
    """chelsea.png at the top left of a grey (114) 640x640 canvas, NHWC 0-255."""
    from PIL import Image
    from testdata import skimage_photo

    photo = np.asarray(Image.open(skimage_photo("chelsea")).convert("RGB"))
    canvas = np.full((1, 640, 640, 3), 114, np.float32)
    canvas[0, :photo.shape[0], :photo.shape[1]] = photo
    return canvas


@pytest.fixture(scope="session")
def yolo_models() -> Path:
    """The models folder with YOLOv8n built (fetched from npm on first use)."""
    from facefinder.models.fetch import ensure_object_model

    models = ROOT / "models"
    ensure_object_model(models, allow_fetch=True, file=catalog.YOLOV8N_FILE)
    return models


def test_built_yolov8n_matches_the_published_graph(yolo_models: Path) -> None:
    """The cut graph, decoded by ``decode_yolo``, gives the published graph's own boxes."""
    from facefinder.vision.objects import decode_yolo

    stored = np.load(YOLO_REFERENCE)["detections"]  # x1 y1 x2 y2 score class, best first
    session = ort.InferenceSession(str(yolo_models / catalog.YOLOV8N_FILE),
                                   providers=["CPUExecutionProvider"])
    levels = session.run(None, {"input": yolo_canvas()})
    assert [level.shape[2:] for level in levels] == [(80, 80), (40, 40), (20, 20)]
    found = decode_yolo([level[0] for level in levels], 0.25, (1.0, 1.0), 640, 640)
    confident = stored[stored[:, 4] > 0.25]
    assert len(confident) >= 1 and confident[0, 5] == 15  # the published graph: cat first
    assert found[0].label == "cat"
    for row in confident:
        same = [d for d in found if d.label == COCO[int(row[5])] and abs(d.score - row[4]) < 1e-4]
        assert same, f"no detection like {row}"
        assert min(np.abs(d.box - row[:4].clip(0, 640)).max() for d in same) < 0.05
    # any size now: a 256 x 320 input gives the three grids of that size
    small = session.run(None, {"input": np.zeros((1, 256, 320, 3), np.float32)})
    assert [level.shape[2:] for level in small] == [(32, 40), (16, 20), (8, 10)]


def test_yolov8n_finds_the_cat_and_the_astronaut(yolo_models: Path) -> None:
    from PIL import Image
    from testdata import skimage_photo

    from facefinder.vision.objects import YOLOV8N_MODEL, load_object_detector

    detector = load_object_detector(YOLOV8N_MODEL, yolo_models)
    cat = np.asarray(Image.open(skimage_photo("chelsea")).convert("RGB"))
    found = detector.detect(cat)
    assert found and found[0].label == "cat" and found[0].score > 0.5
    x1, y1, x2, y2 = found[0].box
    assert x1 < 451 / 2 < x2 and y1 < 300 / 2 < y2 and x2 <= 451 and y2 <= 300
    astronaut = np.asarray(Image.open(skimage_photo("astronaut")).convert("RGB"))
    labels = [d.label for d in detector.detect(astronaut)]
    assert labels[0] == "person" and "cat" not in labels


def make_yolo_reference(published: Path) -> None:
    """Store the published (uncut) YOLOv8n graph's decoded output for the chelsea canvas.

    ``published`` is ``package/model/yolov8n.onnx`` of the pinned npm tarball (its sha256
    is in the catalog). Rows: x1 y1 x2 y2 (input pixels), best class score, class; the
    graph's own head did the decoding (anchors, distance bins, strides); only the
    per-class suppression here is ours, as the graph has none.
    """
    from facefinder.pypi import sha256_of

    assert sha256_of(published) == catalog.YOLO_NODE_RED.member_sha256[0]
    session = ort.InferenceSession(str(published), providers=["CPUExecutionProvider"])
    nchw = np.ascontiguousarray(yolo_canvas().transpose(0, 3, 1, 2)) / 255
    out = session.run(None, {"images": nchw.astype(np.float32)})[0][0]  # 84 x 8400
    scores, classes = out[4:].max(axis=0), out[4:].argmax(axis=0)
    keep = np.argsort(-scores)[:200]
    rows = []
    for i in keep:
        cx, cy, w, h = out[:4, i]
        box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        if any(r[5] == classes[i] and _overlap(box, np.array(r[:4])) > 0.5 for r in rows):
            continue
        rows.append([*box, scores[i], classes[i]])
    np.savez_compressed(YOLO_REFERENCE, detections=np.array(rows[:20], np.float32))
    print(f"wrote {YOLO_REFERENCE}: {rows[:2]}")


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    return float(inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter))


def make_reference() -> None:
    """Store the unconverted graph's detections for the chelsea canvas (numpy runner)."""
    models = ROOT / "models"
    graph = load_graph(models / catalog.CENTERNET_JSON)
    detections = ref.run(graph, {"tower_0/images": chelsea_canvas()}, ["tower_0/detections"])[0]
    DATA.mkdir(exist_ok=True)
    np.savez_compressed(REFERENCE, detections=detections.astype(np.float32))
    print(f"wrote {REFERENCE}: {detections[0, :3]}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if sys.argv[1:2] == ["yolo"]:
        make_yolo_reference(Path(sys.argv[2]))
    else:
        make_reference()
