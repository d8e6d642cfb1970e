"""tslake: keep a Parquet analysis lake in step with a Postgres time-series table.

dbt owns the SQL (models/, macros/); this package owns what SQL should not do:
locking, atomic publish, the manifest, cleanup, and the command line.
"""

__version__ = "0.1.0"
