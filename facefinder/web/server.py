"""The review page's local web server: the JSON API over :class:`facefinder.review.Review`.

Routes are thin: parse the request, call one Review method, turn the answer into JSON.
What makes a local server safe to leave running on a relative's PC:

* it listens on 127.0.0.1 only (the socket is bound here, before uvicorn sees it);
* every request needs the per-run token: the page lives under the address the finder
  prints, ``/s/<token>/``, and asks for everything relative to it (its API, scripts and
  pictures); API clients may send the token as the ``X-Finder-Token`` header instead.
  Not a cookie: a browser sends a cookie of 127.0.0.1 to every server on 127.0.0.1,
  whatever its port, so any other local program the browser visits would receive it
  (and a second review run's cookie would replace the first's);
* a request whose Host is not this loopback address and port (DNS rebinding), or whose
  Origin is another site's, is refused before any route runs;
* files and faces are named by ids; a path never comes from a request, so nothing
  outside the collection's photos can be read through it;
* uploads are size-limited while they are read, and decoded by the same safe decoder
  as the photos; a Content-Security-Policy allows only this server's own scripts.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import secrets
import socket
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from facefinder import thumbs
from facefinder.api import FinderError
from facefinder.records import Match
from facefinder.review import IndexUnavailable, Review, ReviewError

HEADER = "x-finder-token"
PREFIX = "/s/"  # the page's own address: PREFIX + token + "/"
MAX_UPLOAD = 25 * 1024 * 1024  # bytes: a 12 MP JPEG is 3-8 MB, a HEIC less
MAX_JSON = 1024 * 1024
IMAGE_SIDES = (160, 320, 640, 1280, 2048)
STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")


def new_token() -> str:
    """A fresh random token for one run (128 bits)."""
    return secrets.token_urlsafe(16)


def bind_loopback(port: int = 0) -> socket.socket:
    """A listening socket on 127.0.0.1 (``port`` 0: any free port); OSError if taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    return sock


class Guard:
    """ASGI middleware: loopback Host/Origin, the token, and safe response headers."""

    def __init__(self, app: ASGIApp, token: str, port: int) -> None:
        self.app = app
        self.token = token
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        self.origins = {f"http://{host}" for host in self.hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        inside = self._inside(scope)  # under /s/<token>/: what it asks for, from there
        if isinstance(inside, Response):
            await _secure(inside)(scope, receive, send)
            return
        request = Request(inside or scope)
        problem = self._refuse(request, unlocked=inside is not None)
        if problem is not None:
            status, text = problem
            if request.url.path == "/" and status == 401:  # a person at the door: words
                answer: Response = HTMLResponse(_LOCKED_PAGE.format(text=text), status)
            else:
                answer = JSONResponse({"error": text}, status)
            await _secure(answer)(scope, receive, send)
            return

        async def send_secure(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in _HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(inside or scope, receive, send_secure)

    def _inside(self, scope: Scope) -> Scope | Response | None:
        """For a path under ``/s/<this run's token>/``: the request as the routes see it
        (the rest of the path); a redirect for the page's address without its last
        slash; None for any other path (which then needs the header)."""
        path: str = scope["path"]
        if not path.startswith(PREFIX):
            return None
        given, slash, rest = path[len(PREFIX):].partition("/")
        if not _same(given, self.token):
            return None
        if not slash:
            return RedirectResponse(f"{PREFIX}{self.token}/", 308)
        raw = (scope.get("raw_path") or path.encode()).split(b"/", 3)  # "", "s", token, rest
        return {**scope, "path": "/" + rest, "raw_path": b"/" + (raw[3] if len(raw) > 3 else b"")}

    def _refuse(self, request: Request, *, unlocked: bool) -> tuple[int, str] | None:
        host = request.headers.get("host", "")
        if host not in self.hosts:
            return 421, "this page answers only on its own loopback address"
        origin = request.headers.get("origin")
        if origin is not None and origin not in self.origins:
            return 403, "requests from other sites are refused"
        if not unlocked and not _same(request.headers.get(HEADER), self.token):
            return 401, "open the address the finder printed (it holds this run's token)"
        return None


_LOCKED_PAGE = """<!doctype html><html lang="en"><meta charset="utf-8">
<title>Face finder</title><h1>Face finder: review page</h1>
<p>This page is locked: {text}. Look in the window where the finder runs for the line
"Review page: http://127.0.0.1:...", and open that address.</p></html>"""

_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _secure(response: Response) -> Response:
    response.headers.update(_HEADERS)
    return response


def _same(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


# --------------------------------------------------------------------------- JSON shapes


def match_json(review: Review, match: Match) -> dict[str, Any]:
    """A match or maybe as the page needs it: ids, box, the photo's size, when."""
    file, _n, _face = review.face(match.face) if match.face else (None, 0, None)
    return {
        "face": match.face, "file": file.key.hex() if file and file.key else None,
        "path": match.rel, "person": match.person, "distance": round(match.distance, 4),
        "box": list(match.box), "size": list(file.size) if file and file.size else None,
        "kind": file.kind if file else None, "taken": match.taken,
        "taken_from": match.taken_from, "confirmed": match.confirmed,
        "threshold": None if match.threshold is None else round(match.threshold, 4),
        "confidence": match.confidence,
        "first": match.first, "last": match.last, "frames": match.frames,
    }


# --------------------------------------------------------------------------- the app


def make_app(review: Review, token: str, port: int) -> ASGIApp:
    """The review page's ASGI app for one Review, guarded for ``port`` and ``token``."""

    def call(method: Callable[..., Any]) -> Callable[[Request], Awaitable[Response]]:
        """A route running ``method(request)`` in a thread, errors as one-line JSON."""

        async def endpoint(request: Request) -> Response:
            try:
                answer = await method(request)
            except IndexUnavailable as exc:  # locked by another run, read-only, disk full
                return JSONResponse({"error": str(exc)}, 503)
            except (ReviewError, FinderError) as exc:  # (a refresh of an unplugged folder)
                return JSONResponse({"error": str(exc)}, 400)
            except _TooLarge as exc:
                return JSONResponse({"error": str(exc)}, 413)
            if isinstance(answer, Response):
                return answer
            return JSONResponse(answer)

        return endpoint

    async def page(request: Request) -> Response:
        return Response(_asset("index.html"), media_type="text/html; charset=utf-8")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return JSONResponse({"error": "not found"}, 404)
        return Response(_asset(name), media_type=STATIC[name] + "; charset=utf-8")

    async def summary(request: Request) -> dict:
        result = review.result
        s = result.summary
        return {"photos": str(review.photos), "model": result.model,
                "threshold": result.threshold, "maybe_below": review.maybe_below,
                "thresholds": {k: round(v, 4) for k, v in result.thresholds.items()},
                "files": s.files_scanned, "images": s.images_read, "videos": s.videos_read,
                "faces": s.faces_found, "unreadable": len(s.unreadable),
                "matches": len(result.matches), "maybes": len(result.maybes),
                "decisions": len(review.verdicts)}

    async def people(request: Request) -> dict:
        return {"people": await run_in_threadpool(review.people)}

    async def matches(request: Request) -> dict:
        person = request.query_params.get("person")
        offset, limit = _int(request, "offset", 0), _int(request, "limit", 100000)
        def answer() -> dict:
            found = review.matches(person)
            return {"total": len(found), "offset": offset,
                    "matches": [match_json(review, m) for m in found[offset:offset + limit]]}

        return await run_in_threadpool(answer)

    async def suggestions(request: Request) -> dict:
        person = request.query_params.get("person", "")
        limit = _int(request, "limit", 20)
        kind = request.query_params.get("kind", "both")
        found = await run_in_threadpool(
            lambda: [match_json(review, m) for m in review.suggestions(person, limit, kind)])
        result = review.result
        cut = next((v for k, v in result.thresholds.items() if k.casefold() == person.casefold()),
                   result.threshold)
        return {"person": person, "threshold": round(cut, 4),
                "suggestions": found}

    async def decisions(request: Request) -> dict:
        body = await _json(request)
        items = body.get("decisions", [body]) if isinstance(body, dict) else body
        if not isinstance(items, list) or not items:
            raise ReviewError("send {face, person, verdict} or {decisions: [...]}")
        if not all(isinstance(item, dict) for item in items):
            raise ReviewError("each decision is {face, person, verdict}")
        await run_in_threadpool(review.decide_all, [
            (_text(i, "face"), _text(i, "person"), _text(i, "verdict"))
            for i in items])
        return {"ok": True, "decided": len(items), "matches": len(review.result.matches)}

    async def clusters(request: Request) -> dict:
        hidden = request.query_params.get("hidden") in ("1", "true", "yes")
        offset, limit = _int(request, "offset", 0), _int(request, "limit", 50)
        sample = _int(request, "faces", 12)
        found = await run_in_threadpool(lambda: review.clusters(hidden=hidden))
        return {"total": len(found), "offset": offset, "clusters": [
            {"id": c.id, "size": c.size, "photos": len(c.files), "hidden": c.hidden,
             "faces": c.faces[:sample]} for c in found[offset:offset + limit]]}

    async def cluster_action(request: Request) -> dict:
        cluster = _path_int(request, "cluster")
        action = request.path_params["action"]
        body = await _json(request)
        if not isinstance(body, dict):
            raise ReviewError("send a JSON object")
        if action == "name":
            await run_in_threadpool(review.name_cluster, cluster, _text(body, "name"))
        elif action == "merge":
            other = body.get("other")
            if not isinstance(other, int) or isinstance(other, bool):
                raise ReviewError("merge needs {other: cluster id}")
            await run_in_threadpool(review.merge_clusters, cluster, other)
        elif action == "hide":
            hidden = body.get("hidden", True)
            if not isinstance(hidden, bool):
                raise ReviewError("hidden must be true or false")
            await run_in_threadpool(review.hide_cluster, cluster, hidden)
        else:
            return JSONResponse({"error": "not found"}, 404)
        return {"ok": True}

    async def photo(request: Request) -> dict:
        return await run_in_threadpool(review.photo, request.path_params["file"])

    async def file_image(request: Request) -> Response:
        file = request.path_params["file"]
        path = await run_in_threadpool(review.path_of, file)
        kind = (await run_in_threadpool(review.file, file)).kind
        side = _side(request)
        at = request.query_params.get("at")
        if kind == "video":
            thumb = await run_in_threadpool(thumbs.video_frame, path, _float(at), side=side)
        else:
            thumb = await run_in_threadpool(lambda: thumbs.photo(path, side=side))
        return _jpeg(thumb)

    async def face_image(request: Request) -> Response:
        file, _n, face = await run_in_threadpool(review.face, request.path_params["face"])
        assert file.key is not None  # (a face is always of a file with a key)
        path = await run_in_threadpool(review.path_of, file.key.hex())
        side = _side(request, 160)
        if file.kind == "video":
            thumb = await run_in_threadpool(
                lambda: thumbs.video_frame(path, face.time or 0.0, side=side))
        else:
            thumb = await run_in_threadpool(lambda: thumbs.photo(path, side=side,
                                                                 crop=face.box))
        return _jpeg(thumb)

    async def search(request: Request) -> dict:
        data = await _body(request, MAX_UPLOAD)
        if not data:
            raise ReviewError("send the photo's bytes as the request body")
        faces = await run_in_threadpool(review.search, data, _int(request, "k", 5))
        return {"faces": faces}

    async def refresh(request: Request) -> dict:
        await run_in_threadpool(review.refresh)
        return await summary(request)

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
        Route("/api/summary", call(summary), methods=["GET"]),
        Route("/api/people", call(people), methods=["GET"]),
        Route("/api/matches", call(matches), methods=["GET"]),
        Route("/api/suggestions", call(suggestions), methods=["GET"]),
        Route("/api/decisions", call(decisions), methods=["POST"]),
        Route("/api/clusters", call(clusters), methods=["GET"]),
        Route("/api/clusters/{cluster}/{action}", call(cluster_action), methods=["POST"]),
        Route("/api/photos/{file}", call(photo), methods=["GET"]),
        Route("/api/files/{file}/image", call(file_image), methods=["GET"]),
        Route("/api/faces/{face}/image", call(face_image), methods=["GET"]),
        Route("/api/search", call(search), methods=["POST"]),
        Route("/api/refresh", call(refresh), methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    # a path with one slash too many is not redirected: the redirect would leave the
    # page's own address (/s/<token>/) and so its key behind
    app.router.redirect_slashes = False
    return Guard(app, token, port)


# --------------------------------------------------------------------------- helpers


class _TooLarge(Exception):
    pass


def _asset(name: str) -> bytes:
    return (resources.files("facefinder.web") / "static" / name).read_bytes()


def _text(body: dict, name: str) -> str:
    """``body[name]`` when it is text ("" when missing): a null, a number or a list is
    refused, never turned into a name such as "None"."""
    value = body.get(name, "")
    if not isinstance(value, str):
        raise ReviewError(f"{name} must be text")
    return value


def _int(request: Request, name: str, default: int) -> int:
    try:
        return max(0, int(request.query_params.get(name, default)))
    except ValueError:
        raise ReviewError(f"{name} must be a whole number") from None


def _path_int(request: Request, name: str) -> int:
    try:
        return int(request.path_params[name])
    except ValueError:
        raise ReviewError(f"{name} must be a whole number") from None


def _float(text: str | None) -> float:
    try:
        return max(0.0, float(text or 0.0))
    except ValueError:
        raise ReviewError("at must be a number of seconds") from None


def _side(request: Request, default: int = 320) -> int:
    wanted = _int(request, "side", default)
    return min((s for s in IMAGE_SIDES if s >= wanted), default=IMAGE_SIDES[-1])


def _jpeg(thumb: thumbs.Thumbnail | None) -> Response:
    if thumb is None:
        return JSONResponse({"error": "this file cannot be shown now"}, 404)
    return Response(thumb.jpeg, media_type="image/jpeg")


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it grows past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge(f"upload too large (at most {limit // (1024 * 1024)} MB)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge(f"upload too large (at most {limit // (1024 * 1024)} MB)")
        chunks.append(chunk)
    return b"".join(chunks)


async def _json(request: Request) -> Any:
    data = await _body(request, MAX_JSON)
    try:
        return json.loads(data or b"{}")
    except (ValueError, RecursionError):  # "[[[[...": deeper than Python's recursion limit
        raise ReviewError("the request body is not JSON") from None


def serve(review: Review, *, port: int = 0, open_browser: bool = True,
          say: Callable[[str], None] = print) -> None:
    """Serve the review page on 127.0.0.1 until Ctrl-C; print (and open) its address."""
    import uvicorn

    sock = bind_loopback(port)
    port = sock.getsockname()[1]
    token = new_token()
    url = f"http://127.0.0.1:{port}{PREFIX}{token}/"
    config = uvicorn.Config(make_app(review, token, port), log_level="warning",
                            access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    say(f"Review page: {url}")
    say("(only this PC can open it; press Ctrl-C here to stop)")
    if open_browser:
        import webbrowser

        with contextlib.suppress(Exception):
            webbrowser.open(url)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
