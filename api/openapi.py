"""The OpenAPI document, made to tell the truth about request bodies.

Posting routes read the raw body themselves (so that malformed JSON is 400,
a wrong shape 422 with field paths, and bodies are decoded by their kind).
Litestar cannot see those bodies, so the JSON render plugin adds them: the
envelope schema, with the body's schema chosen by ``kind`` (if/then).
"""

from __future__ import annotations

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
    envelope = components["EntryRequest"]
    envelope["properties"]["kind"] = {"type": "string", "enum": list(POSTABLE_KINDS)}
    envelope["properties"]["body"] = {"type": "object", "description": "The kind's body"}
    envelope["allOf"] = [
        {
            "if": {"properties": {"kind": {"const": kind}}},
            "then": {"properties": {"body": schema}},
        }
        for kind, schema in zip(POSTABLE_KINDS, schemas[1:], strict=True)
    ]
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


def patch_openapi(doc: dict[str, Any]) -> dict[str, Any]:
    components, bodies = _entry_schema()
    doc.setdefault("components", {}).setdefault("schemas", {}).update(components)
    for path_item in doc.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            ref = bodies.get(operation.get("operationId", ""))
            if ref is not None:
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": ref}}},
                }
    return doc


class TruthfulJsonRenderPlugin(JsonRenderPlugin):
    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return self.render_json(request, patch_openapi(openapi_schema))
