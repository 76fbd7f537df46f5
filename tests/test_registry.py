"""The model registry: separate parts with explicit specs, keys derived from them, and a
package whose modules import each other one way only."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from conftest import ROOT

from facefinder.analyse import AnalysisJob, AnalysisSettings, analysis_key, describe_key
from facefinder.vision.registry import MODELS, ModelSpec, load_pipeline, model_spec

PACKAGE = ROOT / "facefinder"


def _imports(path: Path) -> set[str]:
    """Every facefinder module a file imports, at module level or inside functions."""
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            name = node.module
            if node.level:
                name = ".".join([*module.split(".")[: -node.level], name])
            if name.startswith("facefinder"):
                found.add(name)
                found.update(f"{name}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("facefinder"))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
               for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name}
            for name, path in modules.items()}


def test_no_import_cycles() -> None:
    """Each module can be understood (and tested) without the ones that use it."""
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if nxt == "facefinder":
                continue  # the package's lazy __getattr__ re-export, not a dependency
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_run_time_code_never_imports_the_build_tools() -> None:
    """Converting and quantising models happens once at fetch time, never during a search.

    Only ``models.fetch`` reaches the build tools, and only when a file is missing (inside
    a function): the analysis, wherever it runs, never does.
    """
    graph = _graph()
    fetch = PACKAGE / "models" / "fetch.py"
    top = [n for n in ast.parse(fetch.read_text(encoding="utf-8")).body
           if isinstance(n, ast.ImportFrom) and "build" in (n.module or "")]
    assert not top, "models.fetch imports the build tools at module level"
    for module in ("facefinder.vision.registry", "facefinder.analyse", "facefinder.executors",
                   "facefinder.cached", "facefinder.index", "facefinder.match"):
        seen, todo = set(), [module]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            todo += graph[current]
        assert not {m for m in seen if m.startswith("facefinder.models.build")
                    or m == "facefinder.models.fetch"}, module


def test_every_model_has_three_loadable_parts(models_dir: Path) -> None:
    """Detector, crop and embedder are separate parts, loaded from the spec alone."""
    spec = model_spec("facenet")
    assert spec is MODELS["facenet"] and spec.files == (
        "centerface.onnx", "centerface-int8.onnx", "facenet128-int8.onnx")
    pipe = load_pipeline(spec, models_dir)
    assert hasattr(pipe.detector, "detect") and hasattr(pipe.cropper, "crop")
    assert hasattr(pipe.embedder, "embed")
    with pytest.raises(ValueError, match="choose one of: Facenet, dlib"):
        model_spec("nope")


@pytest.mark.parametrize("part,change", [
    ("crop", {"margin": 0.12}), ("crop", {"rotate": False}), ("crop", {"size": 150}),
    ("detector", {"score_threshold": 0.6}), ("embedder", {"flip": False}),
    ("embedder", {"revision": 2}),
])
def test_any_change_to_a_part_changes_the_index_key(models_dir: Path, part: str,
                                                    change: dict) -> None:
    """No crop or detector parameter can slip past the face index's key."""
    spec = model_spec("Facenet")
    changed: ModelSpec = dataclasses.replace(
        spec, **{part: dataclasses.replace(getattr(spec, part), **change)})
    assert (analysis_key(AnalysisJob(changed, models_dir), "image")
            != analysis_key(AnalysisJob(spec, models_dir), "image"))


def test_video_rate_only_changes_the_video_key(models_dir: Path) -> None:
    """--video-fps re-reads videos, never photos."""
    spec = model_spec("Facenet")
    one = AnalysisJob(spec, models_dir, AnalysisSettings(video_fps=1.0))
    two = AnalysisJob(spec, models_dir, AnalysisSettings(video_fps=2.0))
    assert analysis_key(one, "image") == analysis_key(two, "image")
    assert analysis_key(one, "video") != analysis_key(two, "video")


def test_key_described_in_plain_words(models_dir: Path) -> None:
    """--index-info shows what a key means, never the key itself."""
    text = describe_key(analysis_key(AnalysisJob(model_spec("Facenet"), models_dir), "video"))
    assert text.startswith("Facenet: CenterFace detector at 800 px")
    assert "videos at 1 frame/s" in text and "{" not in text
    assert describe_key("v1 Facenet weights=x").startswith("older settings")
