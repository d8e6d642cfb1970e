"""The two sides of a parity comparison (runner/ops/parity.py drives it): the committed
file list from the typed manifest, and one DuckDB session with Postgres attached that
renders the parity macros (macros/parity/) for a grain and runs the Postgres side and the
lake side concurrently, on two connections."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from runner.cli_params import days_in
from runner.config import Settings
from runner.core import manifest, roots, tiers
from runner.core.datasets import DatasetSpec
from runner.dbt_bridge import sqlmacros
from runner.errors import ConfigError, ManifestError, SourceError
from runner.postgres.connection import configure_session, connect

_FAR_FUTURE = "infinity"


@dataclass(frozen=True)
class CommittedFile:
    """A file the committed manifest lists, with its absolute path."""

    date: str
    shard: int
    location: str
    path: str
    rows: int
    files_in_shard_day: int
    on_disk: bool


def committed_files(settings: Settings, dataset: str,
                    entry: manifest.DatasetState) -> list[CommittedFile]:
    """Every committed file of `dataset`, by date, shard and path: hot files under
    TSLAKE_HOT_PATH/<dataset>, cold ones under TSLAKE_COLD_PATH/<dataset>. A path that
    leads out of its root (through a symlink) is a ManifestError: nothing outside the
    lake's roots is read."""
    listed = entry.files_of()
    per_shard_day: dict[tuple[str, int], int] = {}
    for date, _, file in listed:
        per_shard_day[date, file.shard] = per_shard_day.get((date, file.shard), 0) + 1
    cold_objects = _cold_objects(settings, dataset, entry)
    found = []
    containment = roots.Containment(settings.manifest_path)
    for date, partition, file in listed:
        path = roots.file_location(settings, dataset, partition.location, file.path,
                                   containment)
        if partition.location == "cold" and cold_objects is not None:
            found.append(CommittedFile(
                date=date, shard=file.shard, location="cold", path=path, rows=file.rows,
                files_in_shard_day=per_shard_day[date, file.shard],
                on_disk=file.path in cold_objects))
            continue
        on_disk = Path(path).exists()
        found.append(CommittedFile(date=date, shard=file.shard, location=partition.location,
                                   path=path, rows=file.rows,
                                   files_in_shard_day=per_shard_day[date, file.shard],
                                   on_disk=on_disk))
    return sorted(found, key=lambda f: (f.date, f.shard, f.path))


def _cold_objects(settings: Settings, dataset: str,
                  entry: manifest.DatasetState) -> set[str] | None:
    """In an object-store cold tier, the relative paths present under the cold dates'
    prefixes (one listing per cold date, never the whole bucket); None for a NAS."""
    tier = tiers.cold_tier(settings)
    if not isinstance(tier, tiers.ObjectStoreTier):
        return None
    try:
        cut = len(dataset) + 1
        dates = sorted(date for date, p in entry.partitions.items() if p.location == "cold")
        return {name[cut:] for date in dates
                for name in tier.store.list_names(f"{dataset}/date={date}/")}
    finally:
        tier.close()


def declaration(spec: DatasetSpec) -> dict[str, Any]:
    """The declaration in the form the parity macros take (parity_check_declaration)."""
    return {"key": list(spec.key), "series": spec.series, "time": spec.time,
            "version": spec.version, "columns": [list(column) for column in spec.columns]}


class ParitySession:
    """One DuckDB database with Postgres attached; the source side of each comparison runs
    on a second connection, concurrently with the lake side."""

    def __init__(self, settings: Settings, spec: DatasetSpec, shards: int, watermark: datetime,
                 files: list[CommittedFile]) -> None:
        self.settings, self.spec, self.shards = settings, spec, shards
        self.watermark, self.files = watermark, files
        self.declaration = declaration(spec)
        self.extra_key = [name for name in spec.key if name not in (spec.series, spec.time)]
        self.conn = connect(settings, attach=True)  # reads an S3 cold tier in place too
        self.source_conn = self.conn.cursor()
        configure_session(self.source_conn, settings)
        self.in_flight = 0

    def close(self) -> None:
        self.source_conn.close()
        self.conn.close()

    def prepare(self, lo: datetime, hi: datetime | None) -> None:
        """The in-flight keys of the window."""
        self._bind(lo, hi, None, [], [])
        inflight = sqlmacros.render("parity_source_inflight", declaration=self.declaration,
                                    schema=self.spec.source_schema,
                                    table=self.spec.source_table, **_BOUNDS)
        self._run(self.conn, f"create or replace table parity_inflight as {inflight}", "source")
        row = self.conn.execute("select count(*) from parity_inflight").fetchone()
        self.in_flight = int(row[0]) if row else 0

    def sample(self, lo: datetime, hi: datetime | None, count: int,
               seed: int | None) -> tuple[list[str], int]:
        """`count` series drawn from those the lake has in the window (a spot check;
        `--all` is the exhaustive one)."""
        files = [f.path for f in self._files(lo, hi, None, None) if f.on_disk]
        self._bind(lo, hi, None, files, [])
        series, when = _quoted(self.spec.series), _quoted(self.spec.time)
        names = sorted(row[0] for row in self.conn.execute(
            f"select distinct {series} from read_parquet(getvariable('tslake_parity_single')) "
            f"where {when} >= getvariable('tslake_parity_from') "
            f"and {when} < getvariable('tslake_parity_to')").fetchall()) if files else []
        seed = random.SystemRandom().randrange(1 << 31) if seed is None else seed
        return random.Random(seed).sample(names, min(count, len(names))), seed

    def check_known(self, wanted: list[str], seen: set[str], lo: datetime,
                    hi: datetime | None) -> None:
        """Series ids named with --sensor-ids that neither side has in the window must
        exist in Postgres at all (an indexed look-up), else it is a ConfigError."""
        unseen = [name for name in wanted if name not in seen]
        if not unseen:
            return
        self.source_conn.execute("set variable tslake_parity_sensors = ?::varchar[]", [unseen])
        known_sql = sqlmacros.render("parity_source_known", declaration=self.declaration,
                                     schema=self.spec.source_schema,
                                     table=self.spec.source_table,
                                     sensors="getvariable('tslake_parity_sensors')")
        try:
            known = {row[0] for row in self.source_conn.execute(known_sql).fetchall()}
        except duckdb.Error as error:
            raise SourceError(f"looking up --sensor-ids in {self.spec.source_schema}."
                              f"{self.spec.source_table} failed: {' '.join(str(error).split())}"
                              "; check that Postgres is up") from None
        unknown = [name for name in unseen if name not in known]
        if unknown:
            files = [f.path for f in self._files(lo, hi, None, None) if f.on_disk][:50]
            column = _quoted(self.spec.series)
            some = sorted(row[0] for row in self.conn.execute(
                f"select distinct {column} from read_parquet(?) limit 5", [files]).fetchall()
                ) if files else []
            examples = ", ".join(repr(name) for name in some) or "none in the window"
            raise ConfigError(f"--sensor-ids: dataset {self.spec.name} has no {self.spec.series} "
                              f"{', '.join(repr(name) for name in unknown[:5])} (it has e.g. "
                              f"{examples}): check the ids, or the --dataset")

    def compare(self, grain: str, lo: datetime, hi: datetime | None, *,
                sensors: list[str] | None = None,
                shards: list[int] | None = None) -> list[dict[str, Any]]:
        files = [f for f in self._files(lo, hi, sensors, shards) if f.on_disk]
        single = [f.path for f in files if f.files_in_shard_day == 1]
        multi = [f.path for f in files if f.files_in_shard_day > 1]
        self._bind(lo, hi, sensors, single, multi)
        sensors_expression = None if sensors is None else "getvariable('tslake_parity_sensors')"
        lake = sqlmacros.render(
            "parity_lake_aggregates", declaration=self.declaration, grain=grain,
            shards=self.shards,
            single_files="getvariable('tslake_parity_single')" if single else None,
            multi_files="getvariable('tslake_parity_multi')" if multi else None,
            ts_from=_BOUNDS["ts_from"], ts_to=_BOUNDS["ts_to"],
            exclude="select * from parity_inflight", sensors=sensors_expression,
            shard_filter=shards)
        source = sqlmacros.render(
            "parity_source_aggregates", declaration=self.declaration,
            schema=self.spec.source_schema, table=self.spec.source_table, grain=grain,
            shards=self.shards, sensors=sensors_expression, shard_filter=shards, **_BOUNDS)
        failure: list[BaseException] = []

        def source_side() -> None:
            try:
                self._run(self.source_conn, f"create or replace table parity_source as {source}",
                          "source")
            except BaseException as error:  # re-raised below, in the caller's thread
                failure.append(error)

        worker = threading.Thread(target=source_side, name="tslake-parity-source")
        worker.start()
        try:
            self._run(self.conn, f"create or replace table parity_lake as {lake}", "lake")
        finally:
            worker.join()
        if failure:
            raise failure[0]
        extra = self.extra_key if grain == "row_sensor" else []
        compared = sqlmacros.render("parity_compare", lake="select * from parity_lake",
                                    source="select * from parity_source", key_columns=extra)
        order = ", ".join(["bucket", "shard", "series", *(f'"key_{name}"' for name in extra)])
        rows = _rows(self.conn.execute(f"{compared} order by {order}"))
        for row in rows:
            row["sensor_id"] = row.pop("series")
            row["key"] = {name: value(row.pop(f"key_{name}")) for name in extra}
            row["date"] = row["bucket"].date().isoformat()
            row["bucket"] = text(row["bucket"].replace(tzinfo=UTC))
            for key in ("source_min_ts", "lake_min_ts", "source_max_ts", "lake_max_ts"):
                row[key] = text(row[key])
        return rows

    def missing_files(self, lo: datetime, hi: datetime | None,
                      sensors: list[str] | None) -> list[dict[str, Any]]:
        return [{"date": f.date, "shard": f.shard, "location": f.location, "path": f.path}
                for f in self._files(lo, hi, sensors, None) if not f.on_disk]

    def _files(self, lo: datetime, hi: datetime | None, sensors: list[str] | None,
               shards: list[int] | None) -> list[CommittedFile]:
        first = lo.date().isoformat()
        last = None if hi is None else days_in(lo, hi)[-1]
        wanted = set(shards) if shards is not None else None
        if sensors is not None:
            shard_of = sqlmacros.render("shard_of", sensor_id="s", shards=self.shards)
            found = self.conn.execute(f"select distinct {shard_of} from unnest(?) as t(s)",
                                      [sensors]).fetchall()
            by_sensor = {int(row[0]) for row in found}
            wanted = by_sensor if wanted is None else wanted & by_sensor
        return [f for f in self.files if f.date >= first and (last is None or f.date <= last)
                and (wanted is None or f.shard in wanted)]

    def _bind(self, lo: datetime, hi: datetime | None, sensors: list[str] | None,
              single: list[str], multi: list[str]) -> None:
        values = {"from": text(lo), "to": text(hi) if hi else _FAR_FUTURE,
                  "watermark": text(self.watermark)}
        for conn in (self.conn, self.source_conn):
            for name, value in values.items():
                conn.execute(f"set variable tslake_parity_{name} = ?::timestamptz", [value])
            conn.execute("set variable tslake_parity_sensors = ?::varchar[]", [sensors or []])
            conn.execute("set variable tslake_parity_single = ?::varchar[]", [single])
            conn.execute("set variable tslake_parity_multi = ?::varchar[]", [multi])

    def _run(self, conn: duckdb.DuckDBPyConnection, sql: str, side: str) -> None:
        try:
            conn.execute(sql)
        except duckdb.Error as error:
            reason = " ".join(str(error).split())
            if side == "source":
                raise SourceError(f"the Postgres side of the parity check failed: {reason}; "
                                  "check that Postgres is up and the role can read "
                                  f"{self.spec.source_schema}.{self.spec.source_table}") from None
            raise ManifestError(f"reading the lake's committed files failed: {reason}; "
                                "run `tslake parity` again, or `tslake repair` over the "
                                "days it names") from None


_BOUNDS = {"ts_from": "getvariable('tslake_parity_from')",
           "ts_to": "getvariable('tslake_parity_to')",
           "watermark": "getvariable('tslake_parity_watermark')"}


def _rows(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [column[0] for column in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _quoted(column: str) -> str:
    """A declared column (validated: lowercase letters, digits, _) as a DuckDB identifier."""
    return f'"{column}"'


def value(item: Any) -> Any:
    """A key value in a report: timestamps as RFC 3339, the rest as they are."""
    return text(item) if isinstance(item, datetime) else item


def text(moment: datetime | None) -> str | None:
    return None if moment is None else manifest.rfc3339(moment)
