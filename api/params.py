"""Path and query parameters shared by the routes, each described for the OpenAPI."""

from __future__ import annotations

import re
from typing import Annotated, Any

from litestar import Request
from litestar.handlers import HTTPRouteHandler
from litestar.params import (
    CookieParameter,
    HeaderParameter,
    Parameter,
    ParameterKwarg,
    PathParameter,
)
from litestar.typing import FieldDefinition

from ledger.errors import FieldError, InvalidInput

#: No NUL byte: PostgreSQL cannot store or compare one, so a text parameter holding
#: one is refused with a 422 naming it instead of failing in the database.
NO_NUL = r"^[^\x00]*$"

OrgCode = Annotated[
    str,
    PathParameter(
        description="Code of the disclosing body, e.g. sz-epb", max_length=63, pattern=NO_NUL
    ),
]
Year = Annotated[
    int, PathParameter(ge=1900, le=2999, description="Fiscal year of the log (year of occurred_on)")
]
NonNeg = Annotated[int, Parameter(ge=0, le=2**53 - 1)]
#: A fund's or project's code in a path (the codes entries give them; see ledger.kinds).
ItemCode = Annotated[
    str, PathParameter(description="The fund's or project's code", max_length=64, pattern=NO_NUL)
]


#: An integer in a query string: decimal digits only. The decoder alone would also
#: take ``1e3``, ``2026.0`` or ``10.0`` for an integer; an auditor's ``start=1e3``
#: should be refused, not read as 1000.
_INTEGER = re.compile(r"-?[0-9]+")
_INTEGER_NAMES: dict[HTTPRouteHandler, frozenset[str]] = {}


def _is_integer(field: FieldDefinition) -> bool:
    """int, an optional int, or a list of them."""
    types = [t for t in field.inner_types if not t.is_none_type] if field.is_union else [field]
    if len(types) == 1 and types[0].is_non_string_collection:
        types = list(types[0].inner_types)
    return bool(types) and all(t.annotation is int for t in types)


def _query_name(name: str, field: FieldDefinition) -> str | None:
    """The query key of a handler parameter; None if it is a header or a cookie."""
    kwarg = field.kwarg_definition
    if not isinstance(kwarg, ParameterKwarg):
        return name
    if isinstance(kwarg, HeaderParameter | CookieParameter) or kwarg.header or kwarg.cookie:
        return None
    return getattr(kwarg, "name", None) or kwarg.query or name


def _integer_names(handler: HTTPRouteHandler) -> frozenset[str]:
    names = _INTEGER_NAMES.get(handler)
    if names is None:
        params = handler.parsed_fn_signature.parameters.items()
        found = (_query_name(name, f) for name, f in params if _is_integer(f))
        names = frozenset(n for n in found if n is not None)
        _INTEGER_NAMES[handler] = names
    return names


async def strict_query_integers(request: Request[Any, Any, Any]) -> None:
    """A ``before_request`` hook: each integer query parameter of the route must be
    written in decimal digits (422 naming the parameter otherwise)."""
    names = _integer_names(request.route_handler)  # type: ignore[arg-type]
    if not names:
        return
    query = request.query_params
    bad = [
        FieldError(f"query.{name}", "must be an integer written in decimal digits")
        for name in sorted(names)
        if name in query and name not in request.path_params
        and not all(_INTEGER.fullmatch(v) for v in query.getall(name))
    ]  # fmt: skip
    if bad:
        raise InvalidInput(f"{bad[0].path[6:]} must be an integer", bad)
