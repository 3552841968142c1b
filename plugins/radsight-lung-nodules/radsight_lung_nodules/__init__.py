"""RadSight's lung-nodule workflow as a plugin: what it adds is declared in manifest.yaml, and
each piece is imported by RadSight only when used, so keep this module empty of imports."""

__version__ = "0.1.0"
