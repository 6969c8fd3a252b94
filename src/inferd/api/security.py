"""/_security/*: native users, roles, API keys and _authenticate, as Elasticsearch serves them."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from inferd.api.body import json_object, read_raw_body
from inferd.api.deps import app_state, authorize, principal, request_info, require
from inferd.api.params import check_params
from inferd.api.render import json_response
from inferd.auth.api_keys import GET_PARAMS
from inferd.auth.privileges import Action

router = APIRouter()

USER = "{username:seg}"
ROLE = "{name:seg}"


async def _body(request: Request) -> dict[str, object]:
    raw = await read_raw_body(request, app_state(request).settings.max_content_length)
    return json_object(raw)


def _names(value: str | None) -> list[str]:
    return [n for n in (value or "").split(",") if n]


def _changed(request: Request, event_action: str, **details: object) -> None:
    """A security change: cached principals are forgotten, and the change is audited as ES records it
    (e.g. put={"user": {"name": ...}}), never with a secret."""
    state = app_state(request)
    state.authenticator.invalidate()
    state.authorizer.config_change(principal(request), event_action, request_info(request), **details)


# -- users (the _password, _enable and _disable routes come before /user/{username}) ------------


async def _change_password(request: Request, username: str | None) -> Response:
    check_params(request, ("refresh",))
    caller = principal(request)
    target = username if username is not None else caller.username
    # Users of the native realms may change their own password without any privilege.
    if not (target == caller.username and caller.api_key is None and caller.authentication_type == "realm"):
        authorize(request, Action.CHANGE_PASSWORD)
    await app_state(request).security.change_password(target, await _body(request))
    _changed(request, "change_password", change={"password": {"user": {"name": target}}})
    return json_response(request, {})


@router.api_route("/_security/user/_password", methods=["PUT", "POST"])
async def change_own_password(request: Request) -> Response:
    return await _change_password(request, None)


@router.api_route(f"/_security/user/{USER}/_password", methods=["PUT", "POST"])
async def change_password(request: Request, username: str) -> Response:
    return await _change_password(request, username)


async def _set_enabled(request: Request, username: str, enabled: bool) -> Response:
    check_params(request, ("refresh",))
    await app_state(request).security.set_enabled(principal(request), username, enabled)
    change = "enable" if enabled else "disable"
    _changed(request, f"change_{change}_user", change={change: {"user": {"name": username}}})
    return json_response(request, {})


@router.api_route(
    f"/_security/user/{USER}/_enable", methods=["PUT", "POST"], dependencies=[Depends(require(Action.SET_ENABLED))]
)
async def enable_user(request: Request, username: str) -> Response:
    return await _set_enabled(request, username, True)


@router.api_route(
    f"/_security/user/{USER}/_disable", methods=["PUT", "POST"], dependencies=[Depends(require(Action.SET_ENABLED))]
)
async def disable_user(request: Request, username: str) -> Response:
    return await _set_enabled(request, username, False)


@router.api_route(f"/_security/user/{USER}", methods=["PUT", "POST"], dependencies=[Depends(require(Action.PUT_USER))])
async def put_user(request: Request, username: str) -> Response:
    check_params(request, ("refresh",))
    created = await app_state(request).security.put_user(username, await _body(request))
    _changed(request, "put_user", put={"user": {"name": username}})
    return json_response(request, {"created": created})


@router.get("/_security/user", dependencies=[Depends(require(Action.GET_USERS))])
async def get_all_users(request: Request) -> Response:
    check_params(request, ("with_profile_uid",))
    status, body = await app_state(request).security.get_users([])
    return json_response(request, body, status)


@router.get(f"/_security/user/{USER}", dependencies=[Depends(require(Action.GET_USERS))])
async def get_users(request: Request, username: str) -> Response:
    check_params(request, ("with_profile_uid",))
    status, body = await app_state(request).security.get_users(_names(username))
    return json_response(request, body, status)


@router.delete(f"/_security/user/{USER}", dependencies=[Depends(require(Action.DELETE_USER))])
async def delete_user(request: Request, username: str) -> Response:
    check_params(request, ("refresh",))
    status, body = await app_state(request).security.delete_user(username)
    _changed(request, "delete_user", delete={"user": {"name": username}})
    return json_response(request, body, status)


@router.get("/_security/_authenticate", dependencies=[Depends(require(Action.AUTHENTICATE))])
async def who_am_i(request: Request) -> Response:
    check_params(request)
    return json_response(request, await app_state(request).security.authenticate(principal(request)))


# -- roles ---------------------------------------------------------------------------------------


@router.api_route(f"/_security/role/{ROLE}", methods=["PUT", "POST"], dependencies=[Depends(require(Action.PUT_ROLE))])
async def put_role(request: Request, name: str) -> Response:
    check_params(request, ("refresh",))
    created = await app_state(request).security.put_role(name, await _body(request))
    _changed(request, "put_role", put={"role": {"name": name}})
    return json_response(request, {"role": {"created": created}})


@router.get("/_security/role", dependencies=[Depends(require(Action.GET_ROLES))])
async def get_all_roles(request: Request) -> Response:
    check_params(request)
    status, body = await app_state(request).security.get_roles([])
    return json_response(request, body, status)


@router.get(f"/_security/role/{ROLE}", dependencies=[Depends(require(Action.GET_ROLES))])
async def get_roles(request: Request, name: str) -> Response:
    check_params(request)
    status, body = await app_state(request).security.get_roles(_names(name))
    return json_response(request, body, status)


@router.delete(f"/_security/role/{ROLE}", dependencies=[Depends(require(Action.DELETE_ROLE))])
async def delete_role(request: Request, name: str) -> Response:
    check_params(request, ("refresh",))
    status, body = await app_state(request).security.delete_role(name)
    _changed(request, "delete_role", delete={"role": {"name": name}})
    return json_response(request, body, status)


# -- API keys ------------------------------------------------------------------------------------


@router.api_route("/_security/api_key", methods=["PUT", "POST"], dependencies=[Depends(require(Action.CREATE_API_KEY))])
async def create_api_key(request: Request) -> Response:
    check_params(request, ("refresh",))
    raw = await read_raw_body(request, app_state(request).settings.max_content_length)
    body = await app_state(request).api_keys.create(principal(request), json_object(raw), raw)
    _changed(request, "create_apikey", create={"apikey": {"id": body["id"], "name": body["name"]}})
    return json_response(request, body)


def _about_own_keys(request: Request, owner: bool, username: object, realm: object) -> bool:
    """Whether a get/invalidate request names only the caller's keys (what manage_own_api_key allows)."""
    caller = principal(request)
    if caller.api_key is not None:
        return False
    return owner or (username == caller.username and realm == caller.realm.name)


@router.get("/_security/api_key")
async def get_api_keys(request: Request) -> Response:
    check_params(request, GET_PARAMS)
    params = request.query_params
    own = _about_own_keys(
        request, params.get("owner") in ("", "true"), params.get("username"), params.get("realm_name")
    )
    grant = authorize(request, Action.GET_API_KEY, own_keys_would_do=own)
    status, body = await app_state(request).api_keys.get(principal(request), grant, params)
    return json_response(request, body, status)


@router.delete("/_security/api_key")
async def invalidate_api_keys(request: Request) -> Response:
    check_params(request, ("refresh",))
    raw = await read_raw_body(request, app_state(request).settings.max_content_length)
    body = json_object(raw)
    own = _about_own_keys(request, body.get("owner") is True, body.get("username"), body.get("realm_name"))
    grant = authorize(request, Action.INVALIDATE_API_KEY, own_keys_would_do=own)
    result = await app_state(request).api_keys.invalidate(principal(request), grant, body, raw)
    _changed(request, "invalidate_apikeys", invalidate={"apikeys": {"ids": result["invalidated_api_keys"]}})
    return json_response(request, result)
