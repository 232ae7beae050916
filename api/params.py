"""Path and query parameters shared by the routes, each described for the OpenAPI."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter, PathParameter

OrgCode = Annotated[
    str, PathParameter(description="Code of the disclosing body, e.g. sz-epb", max_length=63)
]
Year = Annotated[
    int, PathParameter(ge=1900, le=2999, description="Fiscal year of the log (year of occurred_on)")
]
NonNeg = Annotated[int, Parameter(ge=0, le=2**53 - 1)]
