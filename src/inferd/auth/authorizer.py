"""Authorisation of each action (and each inference endpoint), recorded in the audit trail."""

from __future__ import annotations

from dataclasses import dataclass

from inferd.auth.audit import AuditTrail
from inferd.auth.principal import Principal, denied
from inferd.auth.roles import Grant


@dataclass(frozen=True)
class RequestInfo:
    method: str
    path: str
    address: str
    request_id: str
    opaque_id: str | None = None


def principal_fields(principal: Principal) -> dict[str, object]:
    fields: dict[str, object] = {
        "user.name": principal.username,
        "user.realm": principal.realm.name,
        "user.roles": list(principal.roles),
        "authentication.type": principal.authentication_type.upper(),
    }
    if principal.api_key is not None:
        fields["apikey.id"] = principal.api_key.id
        fields["apikey.name"] = principal.api_key.name
    return fields


def request_fields(info: RequestInfo) -> dict[str, object]:
    return {
        "origin.type": "rest",
        "origin.address": info.address,
        "url.path": info.path,
        "request.method": info.method,
        "request.id": info.request_id,
        "opaque_id": info.opaque_id,
    }


class Authorizer:
    def __init__(self, audit: AuditTrail) -> None:
        self.audit = audit

    def authorize(
        self, principal: Principal, action: str, info: RequestInfo, *, own_keys_would_do: bool | None = None
    ) -> Grant:
        grant = principal.grant(action)
        self._record(grant is not None, principal, action, info)
        if grant is None:
            raise denied(principal, action, own_keys_would_do=own_keys_would_do)
        return grant

    def authorize_endpoint(
        self, principal: Principal, grant: Grant, action: str, inference_id: str, info: RequestInfo
    ) -> None:
        """Roles restricted to some inference endpoints (`inference_ids`) cover only those."""
        if grant.scope.unrestricted:
            return
        allowed = grant.scope.allows(inference_id)
        self._record(allowed, principal, action, info, inference_id)
        if not allowed:
            raise denied(principal, action, inference_id=inference_id)

    def _record(
        self, allowed: bool, principal: Principal, action: str, info: RequestInfo, inference_id: str | None = None
    ) -> None:
        if not self.audit.enabled:
            return  # the fields are built for every request, so not when nothing writes them
        fields = {**principal_fields(principal), **request_fields(info), "action": action, "inference.id": inference_id}
        self.audit.event("transport", "access_granted" if allowed else "access_denied", **fields)

    def authentication_failed(self, info: RequestInfo, username: str | None, *, anonymous: bool = False) -> None:
        """A refused login; ES names a request without credentials `anonymous_access_denied`."""
        action = "anonymous_access_denied" if anonymous else "authentication_failed"
        self.audit.event("rest", action, **{"user.name": username}, **request_fields(info))

    def config_change(self, principal: Principal, event_action: str, info: RequestInfo, **details: object) -> None:
        """A security change (user, role, API key); `details` never holds a password or key secret."""
        fields = {**principal_fields(principal), **request_fields(info), **details}
        self.audit.event("security_config_change", event_action, **fields)
