"""``--html FILE``: one self-contained page to look through what a run found, offline.

The page is a single file that opens from ``file://`` in any browser with no network:
no CDN, no font, no second file. Its Content-Security-Policy forbids every fetch
(``default-src 'none'``), allows images only as ``data:`` URIs, and runs only the one
inline script and style whose sha256 it names - so a hostile file name that slipped past
escaping still could not run or load anything.

Why it is built the way it is:

- **50,000 matches stay usable.** The page holds data, not markup: the matches are one
  JSON block, the previews are base64 JPEGs in plain-text blocks of ``CHUNK`` previews,
  and a small script renders one page (``PAGE`` cards) of one person at a time, so only
  the current page's ``<img>`` elements exist. A section is filled when it scrolls near
  the view.
- **Bounded size.** The previews' byte budget is fixed (``PREVIEW_BUDGET``): the more
  previews, the smaller and more compressed each one (see :func:`preview_settings`); the
  per-preview cap is enforced by re-encoding (:mod:`facefinder.thumbs`), so even photos
  of noise cannot blow it.
- **One preview per file.** A photo matched for three people has one preview; the boxes
  are drawn by the page over it, in percent of the original size.
- **Streamed.** Previews are made in a thread pool (Pillow releases the GIL while
  decoding and encoding) and written in order as they come, so memory holds a window of
  previews, never all of them.
- **Names are data.** Paths and names go through :func:`facefinder.walk.printable`
  (control characters visible, undecodable bytes as U+FFFD) and reach the page only as
  JSON (with ``<``, ``>``, ``&`` escaped) that the script puts in ``textContent``: a file
  named ``<script>.jpg`` is shown, never run.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from facefinder import thumbs
from facefinder.records import FileResult, Match
from facefinder.report import HTML_MARKER, SIGNATURES, _atomic_write, by_date
from facefinder.walk import printable

if TYPE_CHECKING:  # the API (and its models) is not loaded just to name its result
    from facefinder.api import RunResult

MARKER = HTML_MARKER  # what makes a file ours to replace
PAGE = 48  # cards per page of a person
UNREADABLE_PAGE = 100  # rows per page of the unreadable list
CHUNK = 64  # previews per text block: the page splits only the blocks it shows
MAYBES_PER_PERSON = 1000  # closest "maybes" shown per person; the rest are counted
PREVIEW_BUDGET = 100_000_000  # JPEG bytes of all previews together (~133 MB as base64)
MAX_PREVIEW_BYTES = 24_000  # a single preview's cap when there are few
MIN_PREVIEW_BYTES = 1_500  # below this a preview shows too little to be worth it
SAY_ABOVE = 300  # previews beyond which the user is told to expect a short wait

PreviewMaker = Callable[["PreviewJob"], "thumbs.Thumbnail | None"]


@dataclass(frozen=True)
class PreviewJob:
    """One preview to make: a photo, or a video's frame at ``at`` seconds."""

    path: Path
    video: bool
    at: float
    side: int
    quality: int
    max_bytes: int


def preview_settings(count: int) -> tuple[int, int, int]:
    """(long side px, JPEG quality, byte cap) for a report of ``count`` previews.

    Few previews are big and sharp; many are smaller so the file stays openable: the
    caps add up to at most ``PREVIEW_BUDGET`` down to ``MIN_PREVIEW_BYTES`` each (about
    66,000 previews); past that the file grows by ~2 KB a preview.
    """
    cap = max(MIN_PREVIEW_BYTES, min(MAX_PREVIEW_BYTES, PREVIEW_BUDGET // max(1, count)))
    if count <= 3_000:
        return 256, 75, cap
    if count <= 15_000:
        return 192, 70, cap
    return 144, 62, cap


def make_preview(job: PreviewJob) -> thumbs.Thumbnail | None:
    """The default preview maker: the file's own pixels, decoded at about preview size.

    Anything a file can make a decoder raise gives no preview (None): the report is
    worth more than one picture in it.
    """
    try:
        if job.video:
            return thumbs.video_frame(job.path, job.at, side=job.side, quality=job.quality,
                                      max_bytes=job.max_bytes)
        return thumbs.photo(job.path, side=job.side, quality=job.quality,
                            max_bytes=job.max_bytes)
    except Exception:
        return None


# --------------------------------------------------------------------------- the data




def _text(value: str) -> str:
    """A name or reason safe to show: see :func:`facefinder.walk.printable`."""
    return printable(str(value))


def _script_json(value: Any) -> str:
    """JSON that can sit inside ``<script>``: no ``</script>``, ``<!--`` or line
    separators can come out of it, whatever the names hold."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


_SOURCES = {"exif": "camera", "video": "video", "file time": "file date"}


class _Previews:
    """The previews a report needs, each once: photos by path, video frames by time."""

    def __init__(self, root: Path, files: Sequence[FileResult]) -> None:
        self.root = root
        self.keys: dict[tuple[str, float | None], int] = {}
        self.wanted: list[tuple[str, bool, float]] = []
        self._faces = {f.rel: f for f in files if f.kind == "video"}

    def video_moment(self, match: Match) -> tuple[float, bool]:
        """When to show a video, and whether ``match.box`` is on that frame: the best
        face's own frame when the per-file results are kept, else the first sighting
        (with no box: the best face may be on another frame)."""
        kept = self._faces.get(match.rel)
        if kept is not None:
            for face in kept.faces:
                if tuple(face.box) == tuple(match.box) and face.time is not None:
                    return float(face.time), True
        return float(match.first or 0.0), False

    def index(self, rel: str, at: float | None) -> int:
        key = (rel, at)
        if key not in self.keys:
            self.keys[key] = len(self.wanted)
            self.wanted.append((rel, at is not None, at or 0.0))
        return self.keys[key]


def _card(match: Match, previews: _Previews, objects: dict[str, str] | None = None
          ) -> dict[str, Any]:
    """One match as the page's script reads it (short keys: 50,000 of them);
    ``objects``: each file's objects in words (``--objects``), shown under it."""
    shown = _text(match.rel)
    card: dict[str, Any] = {"p": shown, "d": round(float(match.distance), 4)}
    if objects and match.rel in objects:
        card["o"] = _text(objects[match.rel])
    box = [int(v) for v in match.box]
    if match.frames is not None:
        at, exact = previews.video_moment(match)
        card["v"] = [round(float(match.first or 0.0), 1), round(float(match.last or 0.0), 1),
                     int(match.frames), round(at, 1)]
        card["i"] = previews.index(match.rel, at)
        if exact:
            card["b"] = box
    else:
        card["i"] = previews.index(match.rel, None)
        card["b"] = box
    if match.taken:
        card["t"] = match.taken
        card["s"] = _SOURCES.get(match.taken_from or "", match.taken_from or "")
    if match.confirmed:
        card["c"] = 1
    if match.confidence is not None:
        card["k"] = round(float(match.confidence), 4)
    if shown != match.rel:
        card["x"] = 1  # shown differently from its name on disk: no link to open it
    return card


def _best(matches: Iterable[Match]) -> dict[str, dict[str, Match]]:
    """Per person, per file: the closest match (reports list a file once per person)."""
    best: dict[str, dict[str, Match]] = {}
    for match in matches:
        per_person = best.setdefault(match.person, {})
        if match.rel not in per_person or match.distance < per_person[match.rel].distance:
            per_person[match.rel] = match
    return best


def _by_distance(match: Match) -> tuple:
    return (not match.confirmed, float(match.distance), *by_date(match))


def _object_card(file: FileResult, text: str, previews: _Previews) -> dict[str, Any]:
    """A file found for its objects alone (``--with dog``, nobody matched in it)."""
    shown = _text(file.rel)
    card: dict[str, Any] = {"p": shown, "o": _text(text),
                            "i": previews.index(file.rel, 0.0 if file.kind == "video"
                                                else None)}
    if file.taken:
        card["t"] = file.taken
        card["s"] = _SOURCES.get(file.taken_from or "", file.taken_from or "")
    if shown != file.rel:
        card["x"] = 1
    return card


def _document(result: RunResult, previews: _Previews) -> dict[str, Any]:
    from facefinder.object_report import objects_text

    found = _best(result.matches)
    maybes = _best(result.maybes)
    people = list(dict.fromkeys([*result.people, *found, *maybes]))
    objects = {f.rel: objects_text(f.objects or ()) for f in result.object_files}
    sections = []
    for person in people:
        ordered = sorted(found.get(person, {}).values(), key=_by_distance)
        close = sorted(maybes.get(person, {}).values(), key=_by_distance)
        sections.append({
            "n": _text(person),
            "m": [_card(m, previews, objects) for m in ordered],
            "y": [_card(m, previews, objects) for m in close[:MAYBES_PER_PERSON]],
            "ym": max(0, len(close) - MAYBES_PER_PERSON),
        })
    matched = {m.rel for m in result.matches}
    alone = [f for f in result.object_files if f.rel not in matched]
    if alone:  # --with dog: the photos with a dog, whoever is in them
        sections.append({"n": "Objects", "m": [_object_card(f, objects[f.rel], previews)
                                               for f in alone], "y": [], "ym": 0, "obj": 1})
    try:
        root = result.photos.resolve().as_uri() + "/"
    except (OSError, ValueError):
        root = ""
    return {
        "people": sections,
        "unreadable": [[_text(rel), " ".join(_text(reason).split())]
                       for rel, reason in result.unreadable],
        "root": root,
        "page": PAGE,
        "upage": UNREADABLE_PAGE,
        "chunk": CHUNK,
    }


# --------------------------------------------------------------------------- previews


def _ordered(make: PreviewMaker, jobs: Sequence[PreviewJob], workers: int
             ) -> Iterator[thumbs.Thumbnail | None]:
    """``map(make, jobs)`` in a thread pool, in order, with at most a window of results
    waiting: 50,000 previews are written as they come instead of held in memory."""
    if workers <= 1:
        yield from map(make, jobs)
        return
    window = workers * 8
    with ThreadPoolExecutor(workers, thread_name_prefix="preview") as pool:
        pending: list[Future] = []
        todo = iter(jobs)
        try:
            for job in todo:
                pending.append(pool.submit(make, job))
                if len(pending) >= window:
                    yield pending.pop(0).result()
            for future in pending:
                yield future.result()
        finally:
            for future in pending:
                future.cancel()


@contextlib.contextmanager
def _pillow_limits_kept() -> Iterator[None]:
    """Pillow's pixel limit as it was, whatever threads did to it.

    The decoder lifts ``Image.MAX_IMAGE_PIXELS`` around each open (it checks memory
    itself) and puts back what it found; threads interleaving those steps could leave
    the limit lifted for the rest of the process.
    """
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _preview_entry(thumb: thumbs.Thumbnail | None) -> str:
    """``ORIGW,ORIGH,W,H,BASE64`` (empty when the file could not be read again): the
    original's size scales a box onto the preview, the preview's own size lets the page
    lay it out before it is decoded."""
    if thumb is None:
        return ""
    encoded = base64.b64encode(thumb.jpeg).decode("ascii")
    return f"{thumb.orig_width},{thumb.orig_height},{thumb.width},{thumb.height},{encoded}"


# --------------------------------------------------------------------------- the page


def _summary_line(result: RunResult, matched: int, maybes: int) -> str:
    s = result.summary
    parts = [f"{result.model}, threshold {result.threshold:g}",
             f"{s.files_scanned:,} files scanned",
             f"{s.images_read:,} images" + (f", {s.videos_read:,} videos" if s.videos_read
                                             else ""),
             f"{s.faces_found:,} faces",
             f"{matched:,} matches",
             f"{maybes:,} maybes",
             f"{len(s.unreadable):,} unreadable"]
    if s.from_index is not None:
        parts.append(f"{s.from_index:,} answered from the face index")
    if s.elapsed_s:
        parts.append(f"{s.elapsed_s:.1f} s")
    return " · ".join(parts)


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def write_html(
    result: RunResult,
    path: Path,
    *,
    workers: int | None = None,
    make: PreviewMaker | None = None,
    say: Callable[[str], None] | None = None,
) -> None:
    """Write the report of ``result`` to ``path`` (atomically; an existing file is
    replaced only when it is an HTML report of ours, else FileExistsError).

    ``workers``: threads making previews (default: one per core); ``make``: the preview
    maker (default :func:`make_preview`; tests pass a cheaper one); ``say``: told when
    many previews are to be made, since that takes a while.
    """
    path = Path(path)
    previews = _Previews(result.photos, result.files)
    document = _document(result, previews)
    side, quality, cap = preview_settings(len(previews.wanted))
    jobs = [PreviewJob(result.photos / rel, video, at, side, quality, cap)
            for rel, video, at in previews.wanted]
    workers = max(1, workers or os.cpu_count() or 1)
    if say is not None and len(jobs) > SAY_ABOVE:
        say(f"HTML report: making {len(jobs):,} previews ({workers} threads)...")
    matched = sum(len(p["m"]) for p in document["people"] if not p.get("obj"))
    maybes = sum(len(p["y"]) + p["ym"] for p in document["people"])
    head = _head(result, matched, maybes, document)
    make = make or make_preview

    def write(handle: TextIO) -> None:
        handle.write(head)
        handle.write('<script type="application/json" id="ff-data">')
        handle.write(_script_json(document))
        handle.write("</script>\n")
        from facefinder.decode import _open_formats

        _open_formats()  # pillow-heif registered once, before the threads race to it
        with _pillow_limits_kept():
            made = _ordered(make, jobs, workers)
            block: list[str] = []
            number = 0
            for thumb in made:
                block.append(_preview_entry(thumb))
                if len(block) == CHUNK:
                    _block(handle, number, block)
                    number, block = number + 1, []
            if block:
                _block(handle, number, block)
        handle.write(f"<script>{SCRIPT}</script>\n</body>\n</html>\n")

    _atomic_write(path, write, encoding="utf-8", newline="\n", errors="backslashreplace",
                  is_ours=SIGNATURES["html"])


def _block(handle: TextIO, number: int, entries: list[str]) -> None:
    handle.write(f'<script type="text/plain" id="ff-t{number}">')
    handle.write("\n".join(entries))
    handle.write("</script>\n")


def _head(result: RunResult, matched: int, maybes: int, document: dict) -> str:
    """Everything before the data: the marker, the policy, the style, the summary and a
    list of the people (so the page says what it holds even before the script runs)."""
    policy = (f"default-src 'none'; img-src data:; style-src {_hash(STYLE)}; "
              f"script-src {_hash(SCRIPT)}; base-uri 'none'; form-action 'none'")
    e = html.escape
    toc = "".join(
        f'<li><a href="#person-{n}">{e(p["n"])}</a> '
        f'<span class="count">{len(p["m"]):,}</span></li>'
        for n, p in enumerate(document["people"]))
    unreadable = len(document["unreadable"])
    if unreadable:
        toc += f'<li><a href="#unreadable">Files that could not be read</a> ' \
               f'<span class="count">{unreadable:,}</span></li>'
    banner = ""
    if result.interrupted:
        banner = ('<p class="warn">Interrupted: this report holds only what was found '
                  "before the search was stopped. Run again to finish.</p>")
    title = f"Face finder: {', '.join(p['n'] for p in document['people'][:5])}"
    return (
        MARKER.decode() + "\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<header><h1>Face finder report</h1>\n"
        f'<p class="photos">Photos: {e(_text(str(result.photos)))}</p>\n'
        f'<p class="summary" id="summary">{e(_summary_line(result, matched, maybes))}</p>\n'
        f"{banner}<nav><ul>{toc}</ul></nav></header>\n"
        "<noscript><p class=\"warn\">This report shows its photos with JavaScript, which "
        "is switched off here. The same matches are in the finder's --csv and --json "
        "reports.</p></noscript>\n"
        '<main id="app"></main>\n'
    )


STYLE = """
:root{color-scheme:light dark;--fg:#1d1d1f;--bg:#fafafa;--card:#fff;--muted:#666;
--line:#ddd;--box:#ff2d55;--ok:#1a7f37;--maybe:#b26a00}
@media (prefers-color-scheme:dark){:root{--fg:#eee;--bg:#161616;--card:#232323;
--muted:#aaa;--line:#3a3a3a}}
body{margin:0;font:14px/1.4 system-ui,sans-serif;color:var(--fg);background:var(--bg)}
header,main{padding:0 16px}h1{font-size:22px;margin:12px 0 4px}
.summary,.photos{color:var(--muted);margin:2px 0}.warn{background:#fff3cd;color:#533f03;
padding:8px;border-radius:4px}nav ul{list-style:none;padding:0;display:flex;
flex-wrap:wrap;gap:6px 14px}.count{color:var(--muted)}
section{border-top:1px solid var(--line);margin-top:12px}h2{font-size:18px;margin:12px 0 4px}
h3{font-size:15px;margin:14px 0 4px;color:var(--maybe)}
.bar{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin:6px 0}
.bar button,.bar select,.bar input{font:inherit}.bar input{width:5em}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:10px}
figure{margin:0;background:var(--card);border:1px solid var(--line);border-radius:6px;
padding:6px;overflow:hidden}figure.ok{border-color:var(--ok)}
.frame{text-align:center}.pic{position:relative;display:inline-block;max-width:100%;
vertical-align:top}.pic img{display:block;max-width:100%;height:auto}
.box{position:absolute;border:2px solid var(--box);box-shadow:0 0 0 1px #fff8;
min-width:6px;min-height:6px;box-sizing:border-box;transform:translate(-1px,-1px)}
.maybe .box{border-color:var(--maybe);border-style:dashed}
.none{display:flex;align-items:center;justify-content:center;height:120px;
color:var(--muted);font-style:italic}
figcaption{font-size:12px;margin-top:4px}
.path{word-break:break-all}.path a{color:inherit}.meta{color:var(--muted)}
.badge{color:var(--ok);font-weight:600}
table{border-collapse:collapse}td{border-bottom:1px solid var(--line);padding:3px 8px;
vertical-align:top;word-break:break-all}.empty{color:var(--muted)}
"""

SCRIPT = r"""
(function(){
"use strict";
var data=JSON.parse(document.getElementById("ff-data").textContent);
var app=document.getElementById("app"),blocks={};
function el(tag,cls,text){var e=document.createElement(tag);if(cls)e.className=cls;
if(text!==undefined)e.textContent=text;return e;}
function preview(i){var n=Math.floor(i/data.chunk);var b=blocks[n];
if(!b){var s=document.getElementById("ff-t"+n);b=blocks[n]=s?s.textContent.split("\n"):[];}
var t=b[i%data.chunk];if(!t)return null;var p=t.split(",");
return {w:+p[0],h:+p[1],tw:+p[2],th:+p[3],src:"data:image/jpeg;base64,"+p[4]};}
function num(n){return n.toLocaleString("en");}
function clock(s){s=Math.floor(s);var h=Math.floor(s/3600),m=Math.floor(s%3600/60),
x=("0"+s%60).slice(-2);return h?h+":"+("0"+m).slice(-2)+":"+x:m+":"+x;}
function href(rel){try{return data.root+rel.split("/").map(encodeURIComponent).join("/");}
catch(e){return "";}}
function card(c,maybe){var f=el("figure",(c.c?"ok":"")+(maybe?" maybe":""));
var p=c.i===undefined?null:preview(c.i);var pic=el("div","pic");
if(p){var img=el("img"),k=Math.min(1,240/p.tw,200/p.th);img.alt=c.p;img.decoding="async";
img.width=Math.round(p.tw*k);img.height=Math.round(p.th*k);img.src=p.src;pic.appendChild(img);
if(c.b&&p.w&&p.h){var b=el("div","box");b.style.left=(100*c.b[0]/p.w)+"%";
b.style.top=(100*c.b[1]/p.h)+"%";b.style.width=(100*c.b[2]/p.w)+"%";
b.style.height=(100*c.b[3]/p.h)+"%";pic.appendChild(b);}}
else{pic.className="none";pic.textContent="no preview";}
var frame=el("div","frame");frame.appendChild(pic);f.appendChild(frame);
var cap=el("figcaption"),path=el("div","path");
var link=c.x||!data.root?"":href(c.p);
if(link){var a=el("a",null,c.p);a.href=link;a.rel="noopener noreferrer";path.appendChild(a);}
else path.textContent=c.p;cap.appendChild(path);
var meta=(c.t?c.t+" ("+c.s+")":"no date")+(c.d===undefined?"":" · distance "+c.d.toFixed(3))+
(c.k!==undefined&&!c.c?" · "+(c.k*100).toFixed(2)+"% sure":"");
cap.appendChild(el("div","meta",meta));
if(c.v)cap.appendChild(el("div","meta","video: seen "+clock(c.v[0])+"–"+clock(c.v[1])+
", "+c.v[2]+(c.v[2]===1?" frame":" frames")+"; frame at "+clock(c.v[3])));
if(c.o)cap.appendChild(el("div","meta","objects: "+c.o));
if(c.c)cap.appendChild(el("div","badge","✓ confirmed by you"));
f.appendChild(cap);return f;}
function pager(items,size,draw,sorts){var box=el("div"),bar=el("div","bar"),body=el("div");
var page=0,order=items,pages=Math.max(1,Math.ceil(items.length/size));
var prev=el("button",null,"‹ previous"),next=el("button",null,"next ›");
var where=el("span"),jump=el("input");jump.type="number";jump.min=1;jump.max=pages;
jump.setAttribute("aria-label","page");
function show(){page=Math.max(0,Math.min(pages-1,page));body.textContent="";
body.appendChild(draw(order.slice(page*size,page*size+size)));
where.textContent="page "+num(page+1)+" of "+num(pages)+" ("+num(items.length)+")";
prev.disabled=page===0;next.disabled=page>=pages-1;jump.value=page+1;}
prev.onclick=function(){page--;show();};next.onclick=function(){page++;show();};
jump.onchange=function(){page=(parseInt(jump.value,10)||1)-1;show();};
if(sorts){var sel=el("select");sel.setAttribute("aria-label","order");
Object.keys(sorts).forEach(function(k){var o=el("option",null,k);o.value=k;sel.appendChild(o);});
sel.onchange=function(){order=items.slice().sort(sorts[sel.value]);page=0;show();};
bar.appendChild(sel);}
if(pages>1){bar.appendChild(prev);bar.appendChild(where);bar.appendChild(next);
bar.appendChild(jump);}
if(pages>1||sorts)box.appendChild(bar);box.appendChild(body);show();box.pager=bar;return box;}
function grid(maybe){return function(list){var g=el("div","grid");
list.forEach(function(c){g.appendChild(card(c,maybe));});return g;};}
var sorts={"closest first":function(a,b){return (b.c|0)-(a.c|0)||a.d-b.d;},
"oldest first":function(a,b){return (a.t||"")<(b.t||"")?-1:(a.t||"")>(b.t||"")?1:a.d-b.d;},
"newest first":function(a,b){return (a.t||"")>(b.t||"")?-1:(a.t||"")<(b.t||"")?1:a.d-b.d;}};
function fill(s,p){
if(p.m.length)s.appendChild(pager(p.m,data.page,grid(false),sorts));
else s.appendChild(el("p","empty","Not found in any photo."));
if(p.y.length){s.appendChild(el("h3",null,"Maybe "+p.n+"? "+num(p.y.length+p.ym)+
" faces just over the threshold"));
s.appendChild(pager(p.y,data.page,grid(true)));
if(p.ym)s.appendChild(el("p","empty","… and "+num(p.ym)+" more, further away."));}}
var waiting=[];
data.people.forEach(function(p,n){var s=el("section");s.id="person-"+n;
var confirmed=p.m.filter(function(c){return c.c;}).length;
s.appendChild(el("h2",null,p.n+": "+num(p.m.length)+(p.m.length===1?" photo":" photos")+
(confirmed?" ("+confirmed+" confirmed)":"")));app.appendChild(s);
if(n<3||!("IntersectionObserver" in window))fill(s,p);else{s.ffPerson=p;waiting.push(s);}});
if(waiting.length){var seen=new IntersectionObserver(function(es){es.forEach(function(e){
if(e.isIntersecting&&e.target.ffPerson){fill(e.target,e.target.ffPerson);
e.target.ffPerson=null;seen.unobserve(e.target);}});},{rootMargin:"1500px 0px"});
waiting.forEach(function(s){seen.observe(s);});}
if(data.unreadable.length){var u=el("section");u.id="unreadable";
u.appendChild(el("h2",null,"Files that could not be read: "+num(data.unreadable.length)));
u.appendChild(pager(data.unreadable,data.upage,function(rows){var t=el("table");
rows.forEach(function(r){var tr=el("tr");tr.appendChild(el("td","path",r[0]));
tr.appendChild(el("td",null,r[1]));t.appendChild(tr);});return t;}));app.appendChild(u);}
})();
"""


__all__ = ["MARKER", "preview_settings", "write_html"]
