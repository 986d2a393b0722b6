"""``ferdata review``: a local web page to look at what curation flagged and to collect votes.

- :mod:`.session` — what the page shows and writes (no web framework): filters, orders, pages,
  an image's detail, votes, tag changes under the workspace lock;
- :mod:`.votebook` — one annotator's ``votes/<annotator>.csv`` (the long form ``relabel`` reads);
- :mod:`.thumbs` — cached JPEG renderings of crops and originals;
- :mod:`.evidence` — leak pairs and label-issue scores, read from whatever reports exist;
- :mod:`.server` — the Starlette app and uvicorn on 127.0.0.1 (the ``review`` extra);
- ``static/`` — the page: plain HTML, CSS and JavaScript, no build step.
"""

from __future__ import annotations

from .server import create_app, serve_review
from .session import ReviewSession
from .votebook import VOTES_FOLDER, VoteBook, check_annotator

__all__ = ["ReviewSession", "VOTES_FOLDER", "VoteBook", "check_annotator", "create_app", "serve_review"]
