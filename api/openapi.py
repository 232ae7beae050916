"""The OpenAPI document, made to tell the truth about request bodies.

Posting routes read the raw body themselves (so that malformed JSON is 400,
a wrong shape 422 with field paths, and bodies are decoded by their kind).
Litestar cannot see those bodies, so the JSON render plugin adds them: the
envelope schema, with the body's schema chosen by ``kind`` (if/then).
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec
from litestar import Request
from litestar.openapi.plugins import JsonRenderPlugin

from ledger.entries import MAX_BATCH, EntryRequest
from ledger.kinds import KINDS, POSTABLE_KINDS

REF = "#/components/schemas/{name}"


def _entry_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    body_types = [KINDS[k] for k in POSTABLE_KINDS]
    schemas, components = msgspec.json.schema_components(
        [EntryRequest, *body_types], ref_template=REF
    )
    envelope = components.pop("EntryRequest")
    # One variant per kind: the body's schema follows from the kind. (oneOf of plain
    # objects rather than if/then, so that generators such as schemathesis can use it.)
    variants = []
    for kind, schema in zip(POSTABLE_KINDS, schemas[1:], strict=True):
        name = "Entry_" + kind.replace(".", "_")
        variant = copy.deepcopy(envelope)
        variant["title"] = f"{kind} entry"
        variant["properties"]["kind"] = {"type": "string", "const": kind}
        variant["properties"]["body"] = schema
        components[name] = variant
        variants.append({"$ref": REF.format(name=name)})
    components["EntryRequest"] = {
        "description": envelope.get("description", "One entry as a client posts it"),
        "oneOf": variants,
    }
    batch = {
        "type": "object",
        "required": ["entries"],
        "additionalProperties": False,
        "properties": {
            "entries": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_BATCH,
                "items": {"$ref": REF.format(name="EntryRequest")},
            }
        },
    }
    components["EntryBatchRequest"] = batch
    return components, {
        "postEntry": REF.format(name="EntryRequest"),
        "postEntryBatch": REF.format(name="EntryBatchRequest"),
    }


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "Stable URN of the kind of problem"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "Each failing field: its path and why",
            "items": {
                "type": "object",
                "required": ["path", "message"],
                "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,
}

_ERRORS = {
    "400": "Malformed request (bad JSON, bad cursor)",
    "401": "Missing or unknown token",
    "403": "The token may not do this (other org, or role)",
    "404": "No such body, log, entry, fund, project or tender",
    "409": "Conflicts with the ledger's state",
    "413": "Request body over 1 MiB",
    "422": "Does not validate; errors name each field",
    "429": "Rate limited; see Retry-After",
    "500": "Internal error (logged)",
    "503": "Database unreachable",
}


# Responses whose bodies Litestar cannot see from the handler's return type.
_EXTRA_CONTENT: dict[str, dict[str, Any]] = {
    "listEntries": {
        "text/csv": {"schema": {"type": "string"}},
        "application/x-ndjson": {"schema": {"type": "string"}},
    },
    "getAnnualReport": {"text/html": {"schema": {"type": "string"}}},
    "getDisclosure": {
        "application/json": {
            "schema": {"type": "object", "description": "The snapshot's exact bytes"}
        }
    },
}


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": REF.format(name="Problem")}}},
    }


def patch_openapi(doc: dict[str, Any]) -> dict[str, Any]:
    """Request bodies by kind, the problem documents every route may answer, bearer auth."""
    components, bodies = _entry_schema()
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(components)
    schemas["Problem"] = PROBLEM_SCHEMA
    doc["components"]["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from `gongkai token create`; acts for one org in one role",
        }
    }
    for path, path_item in doc.get("paths", {}).items():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            ref = bodies.get(operation.get("operationId", ""))
            if ref is not None:
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": ref}}},
                }
            responses = operation.setdefault("responses", {})
            # Litestar documents its own 400 shape; ours is a problem document.
            for status, description in _ERRORS.items():
                if status == "400" or status not in responses:
                    responses[status] = _problem_response(description)
            if path.startswith("/api/v1"):
                # Staff may send a token to any route (public GETs then show everything).
                operation["security"] = [{"bearer": []}, {}]
            extra = _EXTRA_CONTENT.get(operation.get("operationId", ""))
            if extra:
                responses["200"].setdefault("content", {}).update(extra)
    return doc


class TruthfulJsonRenderPlugin(JsonRenderPlugin):
    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return self.render_json(request, patch_openapi(openapi_schema))
