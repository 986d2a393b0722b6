"""The push of a published folder to a Hugging Face Hub dataset repository.

The Hub is reached through ``huggingface_hub`` (the ``hub`` extra), imported only when a push is
asked for. Every failure is one :class:`~ferdata.errors.PublishError` line saying what to do: no
token, a token the Hub rejects, no network, or a Hub that does not answer within the timeout (an
unreachable Hub must not hang a publish). A gated dataset is never copied into a repo anyone can
read unless the caller says so with ``public=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__
from ..background import Background
from ..errors import FerdataError, PublishError
from . import layout

PUSH_TIMEOUT_S = 10.0


def check_push_allowed(dataset: str, terms: dict[str, Any], *, public: bool, repo_private: bool | None = None) -> None:
    """Refuse a copy of a gated dataset that anyone could read, unless ``public`` says so knowingly.

    ``repo_private`` is the visibility of an existing Hub repo (None: not known yet). A private
    push never needs ``public=True``; pushing into an existing public repo does, and the error
    names the dataset's terms.
    """
    if not terms.get("gated") or public:
        return
    if repo_private is False:
        raise PublishError(
            f"the Hub repo is public and {dataset} may not be shared freely (terms: {terms.get('summary', 'see manifests/')}): "
            "push to a private repo, or pass public=True if these terms allow it"
        )


def _within(seconds: float, call: Callable[[], Any], what: str) -> Any:
    """``call()`` in a helper thread, abandoned after ``seconds``: an unreachable Hub must not hang."""
    work = Background("ferdata-push-probe", call)
    if not work.wait(seconds):
        raise PublishError(
            f"no answer from {what} within {seconds:g} s: check the network (or HF_ENDPOINT) and push again"
        )
    return work.result()


def _hub_failure(exc: BaseException, endpoint: str, step: str) -> PublishError:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status == 401:
        return PublishError(
            f"{endpoint} rejected the Hugging Face token while {step}: run `hf auth login` again or set HF_TOKEN"
        )
    if status == 403:
        return PublishError(f"{endpoint} refused {step} (403): the token needs write access to that namespace")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return PublishError(
        f"cannot reach the Hub at {endpoint} while {step} ({first}): check the network, then push again"
    )


def hub_client(timeout: float = PUSH_TIMEOUT_S):
    """A logged-in ``HfApi`` whose token the Hub accepted, or a one-line PublishError within ``timeout`` s.

    Needs a token (``hf auth login`` or ``$HF_TOKEN``). :func:`~ferdata.publish.publish` calls it
    before writing anything, so that a push without a token or network fails at once, not after
    the shards.
    """
    try:
        from huggingface_hub import HfApi, get_token
    except ImportError:
        raise PublishError("push=REPO_ID needs huggingface_hub: pip install huggingface_hub") from None
    try:
        token = get_token()
    except Exception as exc:  # noqa: BLE001 (an OIDC token exchange via $HF_OIDC_RESOURCE failed)
        raise PublishError(f"cannot get a Hugging Face token ({exc}): run `hf auth login` or set HF_TOKEN") from None
    if not token:
        raise PublishError(
            "no Hugging Face token: run `hf auth login` (or set HF_TOKEN), then publish again with push=REPO_ID"
        )
    api = HfApi(token=token)
    try:
        _within(timeout, api.whoami, api.endpoint)
    except FerdataError:
        raise
    except Exception as exc:  # noqa: BLE001 (huggingface_hub and httpx errors share no useful base class)
        raise _hub_failure(exc, api.endpoint, "checking the token") from None
    return api


def push_folder(
    out_dir: Path,
    repo_id: str,
    *,
    dataset: str,
    terms: dict[str, Any],
    public: bool = False,
    api=None,
    timeout: float = PUSH_TIMEOUT_S,
) -> str:
    """Upload ``out_dir`` to the Hub dataset repo ``repo_id`` (private unless ``public``); its URL.

    Only the card and the shards go up; shards the folder no longer has are deleted on the Hub
    too. An existing public repo is refused for a gated dataset unless ``public``; a public gated
    dataset gets the Hub's manual approval of access requests.
    """
    api = api or hub_client(timeout)
    step = f"creating {repo_id}"
    try:
        url = api.create_repo(repo_id, repo_type="dataset", private=not public, exist_ok=True)
        info = api.repo_info(repo_id, repo_type="dataset")
        check_push_allowed(dataset, terms, public=public, repo_private=bool(getattr(info, "private", True)))
        if public and terms.get("gated"):
            step = f"turning on access requests for {repo_id}"
            api.update_repo_settings(repo_id, repo_type="dataset", gated="manual")
        step = f"uploading to {repo_id}"
        shards = f"{layout.DATA}/**"
        api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=str(out_dir),
            allow_patterns=[layout.CARD, shards],
            delete_patterns=[shards],
            commit_message=f"ferdata {__version__} publish of {dataset}",
        )
    except FerdataError:
        raise
    except Exception as exc:  # noqa: BLE001 (huggingface_hub and httpx errors share no useful base class)
        raise _hub_failure(exc, api.endpoint, step) from None
    return str(url)
