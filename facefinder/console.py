"""What the terminal shows during and after a search: notices, progress, the answer.

The API reports progress as events; this turns them into lines on stderr and a tqdm bar,
and the finished :class:`~facefinder.api.RunResult` into the listing on stdout: per
person a count and the first paths (``--list``), or, for a question (--all/--any/
--without), the answer itself: each file once, oldest first, with who is in it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facefinder.api import Event, FileDone, Finder, FinderError, Notice, RunResult, Started
from facefinder.query import Query, QueryError, parse_date
from facefinder.report import format_answer, format_results, format_summary, safe_print
from facefinder.walk import printable


def say(text: str) -> None:
    """One line for the user on stderr (stdout is kept for the answer)."""
    safe_print(text, sys.stderr)


def query_of(args: argparse.Namespace) -> Query:
    """The --all/--without/--since/... filters, checked before any work is done."""
    try:
        return Query(
            all_of=list(args.all_of), any_of=list(args.any_of or []),
            without=list(args.without),
            since=parse_date(args.since, "--since") if args.since else None,
            until=parse_date(args.until, "--until") if args.until else None,
            min_faces=args.min_faces, max_faces=args.max_faces,
            with_objects=list(getattr(args, "with_objects", None) or []),
        )
    except QueryError as exc:
        raise FinderError(str(exc)) from None


def question_of(args: argparse.Namespace) -> str | None:
    """The question asked, in words, or None when none was (a plain per-person search)."""
    objects = list(getattr(args, "with_objects", None) or [])
    if not (args.all_of or args.without or args.any_of or objects):
        return None
    parts = []
    if args.all_of:
        parts.append(" and ".join(args.all_of) + (" together" if len(args.all_of) > 1 else ""))
    if args.any_of:
        parts.append(" or ".join(args.any_of))
    text = "Files showing " + (", and ".join(parts) if parts else "anyone searched for")
    if objects:
        text += " with " + " and ".join(objects)
    return _question_tail(text, args)


def _question_tail(text: str, args: argparse.Namespace) -> str:
    """The question's filters that are not about people or objects, added to ``text``."""
    if args.without:
        text += ", without " + " or ".join(args.without)
    if args.since:
        text += f", since {args.since}"
    if args.until:
        text += f", until {args.until}"
    for bound, count in (("at least", args.min_faces), ("at most", args.max_faces)):
        if count is not None:
            text += f", with {bound} {count} face{'s' * (count != 1)}"
    return text


class Console:
    """Listens to one run's events and prints its result."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.query = query_of(args)
        self.exclude = [d for d in (args.copy, getattr(args, "annotate", None)) if d]
        self._bar = None

    def on_event(self, event: Event) -> None:
        if isinstance(event, Notice):
            say(printable(event.text))
        elif isinstance(event, Started):
            from tqdm import tqdm

            people = len(event.people)
            cutoff = (f"threshold {self.args.threshold:g}" if self.args.threshold is not None
                      else f"each person's own threshold from {event.threshold:g}")
            say(f"Looking for {people} {'person' if people == 1 else 'people'} "
                 f"({event.reference_faces} reference faces) in {event.photos} with "
                 f"{event.model}, {cutoff}, {event.jobs} "
                 f"job{'s' * (event.jobs > 1)}")
            self._bar = tqdm(total=event.total, unit="file", disable=self.args.no_progress,
                             file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
        elif isinstance(event, FileDone) and self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def print_result(self, result: RunResult, finder: Finder, *, wall_s: float,
                     demo: Path | None) -> None:
        """The listing (or the answer) on stdout; a question's summary goes to stderr, so
        stdout holds only the answer (for a script to read)."""
        args = self.args
        if not result.searched:
            say("Interrupted while reading the reference photos: nothing was searched.")
            return
        for note in self.query.object_notes:
            say(note)
        question = question_of(args)
        objects_only = self.query.with_objects and not (
            args.person or args.all_of or args.any_of or args.without)
        if objects_only:  # --with dog: the files with a dog are the answer
            from facefinder.object_report import format_objects

            question = "Files showing " + " and ".join(
                " or ".join(c) for c in self.query.object_classes)
            safe_print(format_objects(result.object_files, _question_tail(question, args)))
        elif question is not None:
            safe_print(format_answer(result.matches, question, show_distance=args.show_distance))
        else:
            limit = None if args.list == "all" else int(args.list)
            safe_print(format_results(result.matches, result.people,
                                      show_distance=args.show_distance, limit=limit))
        out = say if question is not None else safe_print
        if getattr(args, "objects", False) and not self.query.with_objects:
            from facefinder.object_report import format_objects

            limit = None if args.list == "all" else int(args.list)
            out("")
            out(format_objects(result.object_files, "Objects seen", limit=limit))
        out("")
        rule = describe_rule(result)
        if rule:
            out(rule)
        out(format_summary(result.summary.as_dict(), wall_s=wall_s))
        score = _demo_score(result, demo) if demo is not None else ""
        if score:
            out(score)
        if result.interrupted:
            say("Interrupted: the results above cover only the files read before Ctrl-C"
                 + (" (the face index keeps them: run again to carry on)."
                    if finder.index_path else "."))


def describe_rule(result: RunResult) -> str:
    """One line on how the decision rule treated this collection (cutoffs, expansion)."""
    cuts = sorted(set(round(v, 2) for v in result.thresholds.values()))
    if not cuts or result.chosen_threshold is not None:
        return ""
    span = f"{cuts[0]:g}" if len(cuts) == 1 else f"{cuts[0]:g} to {cuts[-1]:g}"
    grown = sum(result.expanded_faces.values())
    confirmed = sum(result.confirmed_faces.values())
    return (f"Thresholds per person: {span} (stricter where the collection holds look-alikes)"
            + (f"; {grown} sure faces joined their person's references" if grown else "")
            + (f"; {confirmed} faces you confirmed are references" if confirmed else "")
            + ".")


def _demo_score(result: RunResult, demo: Path) -> str:
    """How many of the demo album's photos show each person, and how many were found."""
    from facefinder.models.catalog import read_demo_truth

    truth = read_demo_truth(demo)
    if not truth:
        return ""
    found = {(m.rel, m.person) for m in result.matches}
    lines = ["Demo album: photos of each person, and how many of them were found:"]
    for person in result.people:
        theirs = [rel for rel, who in truth.items() if person in who]
        hits = sum((rel, person) in found for rel in theirs)
        lines.append(f"  {person}: {hits} of {len(theirs)} found")
    wrong = sum(1 for rel, person in found if person not in truth.get(rel, []))
    lines.append(f"  wrong matches: {wrong}. With only 3 reference photos each, some "
                 "photos are missed; more references find more.")
    return "\n".join(lines)
