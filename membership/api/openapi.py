"""The OpenAPI 3 description of the member API, served at ``/api/v1/openapi.json``.

Written by hand, next to the views it describes; tests/integration/test_api_schema.py checks with
schemathesis that every answer the app gives matches it.
"""

from __future__ import annotations

from typing import Any

from membership.billing.rules import Interval, MembershipState

_ERROR = {"$ref": "#/components/schemas/Error"}


def _error_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ERROR}},
    }
    if headers:
        response["headers"] = headers
    return response


def document() -> dict[str, Any]:
    """The OpenAPI document (a fresh dict: callers may change it)."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Member API",
            "version": "1.0.0",
            "description": (
                "What the newsroom's main site needs to know about a reader: whether they are a "
                "patron and which perks they have (ad-free reading, newsletters...). Decide "
                "access with `patron` and `perks`; the other fields describe the membership."
            ),
        },
        "security": [{"apiKey": []}],
        "paths": {
            "/api/v1/members/{email}": {
                "get": {
                    "operationId": "getMember",
                    "summary": "A member's status and perks",
                    "parameters": [
                        {
                            "name": "email",
                            "in": "path",
                            "required": True,
                            "description": (
                                "The member's email address, in any case (it is normalised). "
                                "URL-encode it."
                            ),
                            "schema": {"type": "string", "format": "email", "maxLength": 254},
                            "example": "reader@example.org",
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The member's status and perks, right now.",
                            "headers": {"Cache-Control": {"schema": {"type": "string"}}},
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Member"}
                                }
                            },
                        },
                        "400": _error_response(
                            "Not an address the app accepts: malformed, too long, or at a "
                            "reserved domain such as .test or .local."
                        ),
                        "401": _error_response(
                            "No API key, or one that is unknown or revoked.",
                            {
                                "WWW-Authenticate": {
                                    "required": True,
                                    "schema": {"type": "string", "pattern": "^Bearer"},
                                }
                            },
                        ),
                        "404": _error_response("No live account has this email address."),
                        "429": _error_response(
                            "Too many requests with this key; wait and try again.",
                            {
                                "Retry-After": {
                                    "description": "Seconds to wait.",
                                    "schema": {"type": "integer", "minimum": 0},
                                }
                            },
                        ),
                    },
                }
            }
        },
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "A key made with `flask --app wsgi api-keys create NAME` "
                        "(it starts with `mk_`)."
                    ),
                }
            },
            "schemas": {
                "Member": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": [
                        "email",
                        "status",
                        "patron",
                        "perks",
                        "tier",
                        "interval",
                        "currency",
                        "amount",
                        "current_period_end",
                        "cancel_at_period_end",
                    ],
                    "properties": {
                        "email": {"type": "string", "description": "Normalised (lower case)."},
                        "status": {
                            "type": "string",
                            "enum": [state.value for state in MembershipState],
                            "description": (
                                "The membership state. `none`: never joined (or still entering "
                                "a card); `past_due`: a renewal failed, perks kept during the "
                                "grace period; `lapsed`: past the grace period; `canceling`: "
                                "active until the period ends."
                            ),
                        },
                        "patron": {
                            "type": "boolean",
                            "description": "Whether the member enjoys patron perks right now.",
                        },
                        "perks": {
                            "type": "array",
                            "items": {"type": "string"},
                            "uniqueItems": True,
                            "description": "Keys of the perks the member has now, sorted.",
                        },
                        "tier": {
                            "type": "string",
                            "nullable": True,
                            "description": "Slug of the tier of the current or latest membership.",
                        },
                        "interval": {
                            "type": "string",
                            "nullable": True,
                            "enum": [interval.value for interval in Interval] + [None],
                        },
                        "currency": {
                            "type": "string",
                            "nullable": True,
                            "pattern": "^[A-Z]{3}$",
                            "description": "ISO 4217 code.",
                        },
                        "amount": {
                            "type": "integer",
                            "nullable": True,
                            "minimum": 1,
                            "description": "Per interval, in the currency's minor unit (cents).",
                        },
                        "current_period_end": {
                            "type": "string",
                            "format": "date-time",
                            "nullable": True,
                            "description": "When the paid period ends (ISO 8601, UTC).",
                        },
                        "cancel_at_period_end": {"type": "boolean"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string", "description": "For a person to read."},
                    },
                },
            },
        },
    }
