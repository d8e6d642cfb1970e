"""runner/readers/scan.py: the bucketed scan of every series gives what a plain SQL over the
`metrics` view gives, with several versions of some keys in the lake."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pytest

from conftest import Lake, SourceDb
from runner.readers.scan import scan, scan_arrow

pytestmark = pytest.mark.integration


def test_scan_equals_a_bucketed_query_over_the_view(lake: Lake, source_db: SourceDb):
    source_db.execute("""insert into metrics (sensor_id, ts, value, quality)
                         select 'sensor-' || (i % 7), now() - make_interval(mins => i), i, 0
                         from generate_series(1, 900) as i""")
    lake.run("dbt", "run")
    source_db.execute("update metrics set value = -value, inserted_at = now() "
                      "where sensor_id = 'sensor-3'")  # a second version of 129 keys
    lake.run("dbt", "run", env={"TSLAKE_COMPACT_MIN_FILES": "1000"})
    end = source_db.now().replace(second=0, microsecond=0)
    start = end - timedelta(hours=10)

    reader = duckdb.connect()
    reader.execute("set TimeZone = 'UTC'")
    reader.execute(f"attach '{lake.settings.state_dir / 'lake.duckdb'}' as lake (read_only)")
    expected = reader.execute(
        "select sensor_id, to_timestamp(floor(epoch(ts) / 300) * 300) as bucket_start, "
        "round(avg(value), 9), count(*) from lake.metrics where ts >= $1 and ts < $2 "
        "group by all order by all", [start, end]).fetchall()
    got = scan(lake.settings, start=start, end=end, bucket="5m").fetchall()
    assert [(*row[:2], round(row[2], 9), row[3]) for row in got] == expected
    assert len(expected) > 100 and any(row[2] < 0 for row in expected)  # newest versions
    table = scan_arrow(lake.settings, start=start, end=end, bucket="5m")
    assert table.num_rows == len(expected)
    assert table.column_names == ["sensor_id", "bucket_start", "avg", "samples"]
    nothing = scan(lake.settings, start=start - timedelta(days=400),
                   end=start - timedelta(days=399)).fetchall()
    assert nothing == []
