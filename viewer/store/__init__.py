"""Local database: study index now; results, reports and audit log as later migrations."""

from viewer.store.database import SCHEMA_VERSION, Store
from viewer.store.paths import default_database_path, user_data_dir

__all__ = ["SCHEMA_VERSION", "Store", "default_database_path", "user_data_dir"]
