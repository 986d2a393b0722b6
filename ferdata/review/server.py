"""The review page's HTTP side: a Starlette app over a :class:`~.session.ReviewSession`, served by
uvicorn on 127.0.0.1 only.

Security, in the order a request meets it:

1. the socket listens on the loopback interface only: nothing off this machine can connect;
2. the ``Host`` header must name 127.0.0.1 or localhost (a web page that re-points its own host
   name at 127.0.0.1, "DNS rebinding", is refused);
3. every request carries the token printed at start: in the ``X-Ferdata-Token`` header, or for
   reads (GET) also as ``?token=`` (an ``<img>`` cannot send headers); writes accept the header
   only, which a page on another site cannot set without a CORS preflight this server never
   grants, and a write whose ``Origin`` is another site is refused outright;
4. images are named by image id and looked up in the manifest; the files served are the
   manifest's own paths, checked to stay inside the workspace; the page's own files come from a
   fixed list.

Starlette and uvicorn are the ``review`` extra: ``pip install 'ferdata[review]'``.
"""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import FerdataError, ImageUnreadable, UsageError, WorkspaceLocked
from .session import ReviewSession, UnknownImage
from .thumbs import SIZES, rendering

HOST = "127.0.0.1"
TOKEN_HEADER = "x-ferdata-token"
_ALLOWED_HOSTS = ("127.0.0.1", "localhost")
_STATIC = {"review.js": "text/javascript", "review.css": "text/css"}  # the only files served by name
_SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",  # the token is in the page's address
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}


def require_server() -> None:
    """One line naming the extra when the server packages are missing."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise FerdataError(
            "ferdata review needs the server packages of the review extra: "
            "pip install 'ferdata[review]' (or -e \".[review]\" in a checkout)"
        ) from None


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _static_text(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


async def _json_body(request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise UsageError("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise UsageError("the request body must be a JSON object")
    return data


class _Guard:
    """ASGI middleware: the host, token and origin checks of the module docstring, on every request."""

    def __init__(self, app, token: str):
        self.app = app
        self.token = token

    async def __call__(self, scope, receive, send) -> None:
        from starlette.datastructures import Headers, QueryParams
        from starlette.responses import JSONResponse

        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "").rsplit(":", 1)[0].strip("[]").lower()
        write = scope["method"] not in ("GET", "HEAD")
        given = headers.get(TOKEN_HEADER)
        if given is None and not write:
            given = QueryParams(scope.get("query_string", b"")).get("token")
        problem = None
        if host not in _ALLOWED_HOSTS:
            problem = (403, f"host {host!r} refused: open the address ferdata review printed (http://{HOST}:PORT/...)")
        elif given is None:
            problem = (
                401,
                "this server needs the token ferdata review printed"
                + (": writes send it in the X-Ferdata-Token header" if write else ": open the address it printed"),
            )
        elif not secrets.compare_digest(given.encode(), self.token.encode()):
            problem = (403, "wrong token: open the address ferdata review printed at its start")
        elif (
            write
            and (origin := headers.get("origin"))
            and origin.split("://", 1)[-1].rsplit(":", 1)[0] not in _ALLOWED_HOSTS
        ):
            problem = (403, f"writes from {origin} are refused: use the page this server serves")
        if problem is not None:
            response = JSONResponse({"error": problem[1]}, status_code=problem[0], headers=_SECURITY_HEADERS)
            await response(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.encode(), v.encode()) for k, v in _SECURITY_HEADERS.items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(session: ReviewSession, token: str):
    """The Starlette app serving ``session``; every request must carry ``token``."""
    require_server()
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    page = _static_text("index.html").replace("__TOKEN__", token)
    static = {name: _static_text(name) for name in _STATIC}

    def api(fn: Callable[..., Any]) -> Callable:
        """An endpoint running ``fn(request, body)`` in a worker thread (the session's work is
        blocking file I/O); its errors become JSON with a status a browser script can act on."""

        async def endpoint(request: Request):
            try:
                data = await _json_body(request) if request.method == "POST" else {}
                result = await run_in_threadpool(fn, request, data)
            except WorkspaceLocked as exc:
                return JSONResponse({"error": str(exc), "locked": True}, status_code=409)
            except UnknownImage as exc:
                return JSONResponse({"error": exc.args[0]}, status_code=404)
            except ImageUnreadable as exc:
                return JSONResponse({"error": str(exc)}, status_code=404)
            except FerdataError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            if isinstance(result, Response):
                return result
            return JSONResponse(result, headers={"cache-control": "no-store"})

        return endpoint

    def index(request: Request):
        return HTMLResponse(page, headers={"cache-control": "no-store"})

    def static_file(request: Request):
        name = request.path_params["name"]
        if name not in static:
            return JSONResponse({"error": "not found"}, status_code=404)
        return Response(static[name], media_type=_STATIC[name], headers={"cache-control": "no-store"})

    def meta(request: Request, data: dict):
        return session.meta()

    def images(request: Request, data: dict):
        return session.page(request.query_params)

    def detail(request: Request, data: dict):
        return session.detail(request.query_params.get("id", ""))

    def image(request: Request, data: dict):
        image_id = request.query_params.get("id", "")
        view = request.query_params.get("view", "crop")
        size = request.query_params.get("size", "thumb")
        if size not in SIZES:
            raise UsageError(f"size={size!r} is not one of {', '.join(SIZES)}")
        relative = session.image_path(image_id, view)
        path = rendering(session.ws.root, session.cache_dir, relative, size)
        return FileResponse(path, media_type="image/jpeg", headers={"cache-control": "private, max-age=600"})

    def vote(request: Request, data: dict):
        return session.vote(str(data.get("id", "")), data.get("vote"))

    def tag(request: Request, data: dict):
        on = data.get("on")
        if not isinstance(on, bool):
            raise UsageError("on must be true (add the tag) or false (remove it)")
        return session.set_tag(str(data.get("id", "")), str(data.get("tag", "")), on)

    routes = [
        Route("/", index),
        Route("/static/{name}", static_file),
        Route("/api/meta", api(meta)),
        Route("/api/images", api(images)),
        Route("/api/detail", api(detail)),
        Route("/api/image", api(image)),
        Route("/api/vote", api(vote), methods=["POST"]),
        Route("/api/tag", api(tag), methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(_Guard, token=token)
    return app


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:``port`` (0: a free port)."""
    if not 0 <= port <= 65535:
        raise UsageError(f"port={port} must be between 0 and 65535 (0 picks a free one)")
    try:
        return socket.create_server((HOST, port))
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {HOST}:{port} ({exc.strerror}): choose another port, or 0 for a free one"
        ) from None


def serve_review(
    ws,
    *,
    dataset: str | None = None,
    annotator: str = "annotator",
    port: int = 0,
    scores: Path | str | None = None,
    on_ready: Callable[[str, ReviewSession], None] | None = None,
) -> None:
    """Serve the review page for ``ws`` on 127.0.0.1 until interrupted (Ctrl-C).

    ``on_ready(url, session)`` is called once the socket listens; ``url`` holds the token.
    """
    require_server()
    import uvicorn

    session = ReviewSession(ws, dataset=dataset, annotator=annotator, scores=scores)
    token = new_token()
    app = create_app(session, token)
    sock = bind(port)
    url = f"http://{HOST}:{sock.getsockname()[1]}/?token={token}"
    config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False, lifespan="off")
    server = uvicorn.Server(config)
    if on_ready is not None:
        on_ready(url, session)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a review ends: uvicorn has shut down cleanly, then re-raised it
    finally:
        sock.close()
