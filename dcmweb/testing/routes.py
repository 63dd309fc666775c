"""URL routing: DICOMweb under BASE, operations, the fake token endpoint and /_control."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from urllib.parse import unquote

from . import qido
from .faults import Fault
from .frames import handle_bulkdata, handle_frames
from .handler import Handler, Request
from .metadata import handle_metadata
from .operations import DATASET_NAME, check_search_lag
from .rendered import handle_rendered
from .stow import handle_stow
from .wado import handle_wado

BASE_PATH = f"/v1/{DATASET_NAME}/dicomStores/store/dicomWeb"
# Google serves the same store under v1 and v1beta1 (bulk data samples use v1beta1).
_VERSION = "/(?:v1|v1beta1)/"
_BASE = _VERSION + re.escape(BASE_PATH[len("/v1/") :])
_OPERATIONS = _VERSION + re.escape(f"{DATASET_NAME}/operations")

Action = Callable[..., None]
_U = "([^/]+)"  # one UID path segment
_INSTANCE = f"{_BASE}/studies/{_U}/series/{_U}/instances/{_U}"


def _qido(level: str) -> Action:
    return lambda h, req, *ids: qido.handle_qido(h, req, level, *ids)


def _stow(h: Handler, req: Request, study: str | None = None) -> None:
    handle_stow(h, req, study)


def _wado(h: Handler, req: Request, *ids: str) -> None:
    handle_wado(h, *ids)


def _metadata(h: Handler, req: Request, *ids: str) -> None:
    handle_metadata(h, *ids)


def _frames(h: Handler, req: Request, *ids: str) -> None:
    handle_frames(h, *ids)


def _bulkdata(h: Handler, req: Request, *ids: str) -> None:
    handle_bulkdata(h, *ids)


def _delete(h: Handler, req: Request, study: str, series: str | None = None) -> None:
    rows = h.app.store.instances(study, series)
    if not rows:
        what = f"series {series}" if series else f"study {study}"
        h.send_error_json(404, f"{what} not found")
        return
    root = h.external_base().split("/v1", 1)[0]
    op = h.app.operations.start_delete(study, series, len(rows), root)
    h.send_json(200, {"name": op.name})


def _delete_instance(h: Handler, req: Request, study: str, series: str, sop: str) -> None:
    if h.app.store.delete(study, series, sop, unblock=False, linger=h.app.search_lag) == 0:
        h.send_error_json(404, f"instance {sop} not found")
        return
    h.send_json(200, {})


def _operation(h: Handler, req: Request, op_id: str) -> None:
    body = h.app.operations.get(op_id)
    if body is None:
        h.send_error_json(404, f"operation {op_id} not found")
    else:
        h.send_json(200, body)


def _token(h: Handler, req: Request) -> None:
    if not h.app.token_endpoint:
        h.send_error_json(404, "this server hands out no token (its token endpoint is off)")
        return
    h.send_json(
        200,
        {
            "access_token": h.app.token or "local-token",
            "expires_in": 3600,
            "token_type": "Bearer",
            # Asked for by the STS exchange of google-auth external_account.
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        },
    )


def _add_fault(h: Handler, req: Request) -> None:
    try:
        data = json.loads(req.read_body() or b"{}")
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        fault = Fault.from_json(data)
    except (ValueError, TypeError) as exc:
        h.send_error_json(400, f"invalid fault: {exc}")
        return
    h.app.faults.add(fault)
    h.send_json(200, {})


def _clear_faults(h: Handler, req: Request) -> None:
    h.app.faults.clear()
    h.send_json(200, {})


def _search_lag(h: Handler, req: Request) -> None:
    """GET: the search lag; PUT {"seconds": S}: set it (for deletes from then on)."""
    if req.method == "PUT":
        try:
            data = json.loads(req.read_body() or b"{}")
            if not isinstance(data, dict) or set(data) != {"seconds"}:
                raise ValueError('the body must be {"seconds": S}')
            h.app.search_lag = check_search_lag(data["seconds"])
        except ValueError as exc:
            h.send_error_json(400, f"invalid search lag: {exc}")
            return
    h.send_json(200, {"seconds": h.app.search_lag})


def _list_requests(h: Handler, req: Request) -> None:
    h.send_json(200, [r.to_dict() for r in h.app.records.snapshot()])


def _clear_requests(h: Handler, req: Request) -> None:
    h.app.records.clear()
    h.send_json(200, {})


_TABLE: list[tuple[str, dict[str, Action]]] = [
    (rf"{_BASE}/studies", {"GET": _qido(qido.STUDY), "POST": _stow}),
    (rf"{_BASE}/series", {"GET": _qido(qido.SERIES)}),
    (rf"{_BASE}/instances", {"GET": _qido(qido.INSTANCE)}),
    (rf"{_BASE}/studies/{_U}", {"GET": _wado, "POST": _stow, "DELETE": _delete}),
    (rf"{_BASE}/studies/{_U}/series", {"GET": _qido(qido.SERIES)}),
    (rf"{_BASE}/studies/{_U}/instances", {"GET": _qido(qido.INSTANCE)}),
    (rf"{_BASE}/studies/{_U}/series/{_U}", {"GET": _wado, "DELETE": _delete}),
    (rf"{_BASE}/studies/{_U}/series/{_U}/instances", {"GET": _qido(qido.INSTANCE)}),
    (
        rf"{_BASE}/studies/{_U}/series/{_U}/instances/{_U}",
        {"GET": _wado, "DELETE": _delete_instance},
    ),
    (rf"{_BASE}/studies/{_U}/metadata", {"GET": _metadata}),
    (rf"{_BASE}/studies/{_U}/series/{_U}/metadata", {"GET": _metadata}),
    (rf"{_BASE}/studies/{_U}/series/{_U}/instances/{_U}/metadata", {"GET": _metadata}),
    (rf"{_INSTANCE}/frames/{_U}", {"GET": _frames}),
    (rf"{_INSTANCE}/frames/{_U}/rendered", {"GET": handle_rendered}),
    (rf"{_INSTANCE}/rendered", {"GET": handle_rendered}),
    (rf"{_INSTANCE}/bulkdata/(.+)", {"GET": _bulkdata}),
    (rf"{_OPERATIONS}/([0-9]+)", {"GET": _operation}),
    (r"/token", {"POST": _token}),
    (r"/_control/faults", {"POST": _add_fault, "DELETE": _clear_faults}),
    (r"/_control/requests", {"GET": _list_requests, "DELETE": _clear_requests}),
    (r"/_control/search-lag", {"GET": _search_lag, "PUT": _search_lag}),
]
ROUTES = [(re.compile(pattern), actions) for pattern, actions in _TABLE]


def route(h: Handler, req: Request) -> None:
    """Call the action for the request's path and method; 404 or 405 otherwise."""
    for pattern, actions in ROUTES:
        match = pattern.fullmatch(req.path)
        if match is None:
            continue
        action = actions.get(req.method)
        if action is None:
            allowed = ", ".join(sorted(actions))
            h.send_error_json(
                405, f"method {req.method} not allowed on {req.path}", {"Allow": allowed}
            )
            return
        action(h, req, *(unquote(g) for g in match.groups()))
        return
    h.send_error_json(404, f"no such resource: {req.path}")
