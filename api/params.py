"""Path and query parameters shared by the routes, each described for the OpenAPI."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter, PathParameter

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
