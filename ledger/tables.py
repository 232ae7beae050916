"""Piccolo tables for ordinary queries (disclosing bodies and their tokens).

The append path and the integrity rules do not go through these: they are SQL
in the migrations and ``ledger.store``. These classes mirror those tables for
the everyday reads and writes where Python query building costs nothing that
matters.
"""

from __future__ import annotations

from piccolo.columns import Bytea, Text, Timestamptz, Varchar
from piccolo.table import Table


class Org(Table, tablename="orgs"):
    code = Varchar(length=63, primary_key=True)
    name = Text()
    created_at = Timestamptz()


class Token(Table, tablename="tokens"):
    token_sha256 = Bytea(primary_key=True)
    org = Varchar(length=63)
    role = Varchar(length=16)
    name = Text()
    created_at = Timestamptz()


TABLES: tuple[type[Table], ...] = (Org, Token)
