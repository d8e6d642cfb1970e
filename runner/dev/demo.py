"""`make demo`: an embedded Postgres with realistic farm metrics, and the lake run end to
end with the same commands an operator types. Prints each command before running it."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import psycopg

from runner.config import PROJECT_ROOT, Settings
from runner.dev import devdb, synthetic

BIN = Path(sys.executable).parent
DAYS = 90
SENSORS = 48


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(*args: str, env: dict[str, str], show_output: bool = True) -> str:
    print(f"$ {shlex.join(args)}", flush=True)
    command = [str(BIN / args[0]), *args[1:]]
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=None)
    if show_output and result.stdout.strip():
        print(result.stdout.rstrip(), flush=True)
    if result.returncode != 0:
        raise SystemExit(f"demo: `{shlex.join(args)}` exited {result.returncode}")
    return result.stdout


def main() -> None:
    settings = Settings.from_env()
    pgdata = settings.data_root / "postgres"
    env = {**os.environ, "DO_NOT_TRACK": "1",
           # A short lag so the demo's fresh rows are exported within seconds; the default
           # 300 s guards against slow writers in production.
           "TSLAKE_REPLICATION_LAG_SECONDS": os.environ.get("TSLAKE_REPLICATION_LAG_SECONDS", "2")}

    step(f"Embedded PostgreSQL 18 under {pgdata}")
    pg_env = devdb.start(pgdata, database="tslake_demo")
    env.update(pg_env)
    os.environ.update(pg_env)
    print(" ".join(f"{key}={shlex.quote(value)}" for key, value in pg_env.items()))

    with psycopg.connect(autocommit=True) as conn:
        (existing,) = conn.execute("select to_regclass('public.metrics')").fetchone() or (None,)
        if existing is None:
            step(f"Synthetic farm metrics: {SENSORS} sensors x {DAYS} days")
            started = time.monotonic()
            synthetic.create_metrics_table(conn)
            rows = synthetic.fill_history(conn, days=DAYS, sensors=SENSORS)
            print(f"{rows:,} rows in {time.monotonic() - started:.1f} s")
        else:
            step("Synthetic farm metrics: already there (delete the data root to start over)")

    step(f"Backfill {DAYS} days (dbt run --vars ...)")
    started = time.monotonic()
    run("dbt", "run", "--vars", f"{{backfill_days: {DAYS}, replace_existing: true}}", env=env,
        show_output=False)
    print(f"backfill took {time.monotonic() - started:.1f} s")

    step("New readings arrive; an incremental tick (dbt run) exports them")
    with psycopg.connect(autocommit=True) as conn:
        print(f"{synthetic.insert_live(conn, sensors=SENSORS)} live rows inserted")
    time.sleep(float(env["TSLAKE_REPLICATION_LAG_SECONDS"]) + 1)
    run("dbt", "run", env=env, show_output=False)

    step("The same tick with locking and a JSON summary (tslake tick)")
    with psycopg.connect(autocommit=True) as conn:
        synthetic.insert_live(conn, sensors=SENSORS)
    time.sleep(float(env["TSLAKE_REPLICATION_LAG_SECONDS"]) + 1)
    run("tslake", "tick", env=env)

    step("Compact today's partition: each shard-day's backfill and tick files become one")
    run("tslake", "compact", "--date", time.strftime("%Y-%m-%d", time.gmtime()), env=env)

    step("Inspect the lake (tslake inspect), summarised")
    report = json.loads(run("tslake", "inspect", env=env, show_output=False))
    dataset = report["datasets"]["metrics/v1"]
    dates = sorted(dataset["partitions"])
    print(json.dumps({"hot_path": report["hot_path"],
                      "computed_through_ts": dataset["computed_through_ts"],
                      "partitions": len(dates), "first_date": dates[0], "last_date": dates[-1],
                      "totals": dataset["totals"]}, indent=2))

    step("Read it back: a daily average of one sensor over the last week (tslake query)")
    last = date.fromisoformat(dates[-1])
    run("tslake", "query", "--sensor", "greenhouse-1/air-temp-01", "--start",
        str(last - timedelta(days=7)), "--end", str(last + timedelta(days=1)), "--bucket", "1d",
        "--agg", "avg", env=env)

    step("Parity: Postgres vs lake, exact, over the whole lake (tslake parity --all)")
    report = settings.data_root / "parity.md"
    parity = json.loads(run("tslake", "parity", "--all", "--fail-on-mismatch", "--report",
                            str(report), env=env, show_output=False))
    print(f"{parity['verdict']}: {parity['totals']['source_rows']:,} Postgres rows, "
          f"{parity['totals']['lake_rows']:,} lake rows in {parity['totals']['groups']} "
          f"day/shard groups ({parity['seconds']} s); report: {report}")

    step("Point the same commands at a real Postgres")
    print("export PGHOST=db.example PGPORT=5432 PGDATABASE=farm PGUSER=tslake"
          "   # password in ~/.pgpass\n"
          "# or: export TSLAKE_PG_DSN='host=db.example dbname=farm user=tslake'\n"
          "dbt run    # or: .venv/bin/tslake tick\n"
          f"Stop the demo database with: {BIN}/python -m runner.dev.devdb stop --dir {pgdata}")


if __name__ == "__main__":
    main()
