"""Piccolo's configuration module (``PICCOLO_CONF=ledger.piccolo_conf``)."""

from piccolo.conf.apps import AppRegistry

from ledger.db import current_engine

DB = current_engine()

APP_REGISTRY = AppRegistry(apps=["ledger.piccolo_app"])
