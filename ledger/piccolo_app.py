"""The Piccolo app of the ledger: its tables and migrations folder."""

import os

from piccolo.conf.apps import AppConfig

from ledger.tables import TABLES

APP_CONFIG = AppConfig(
    app_name="ledger",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=list(TABLES),
    migration_dependencies=[],
    commands=[],
)
