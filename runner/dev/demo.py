"""`make demo`: an embedded Postgres with realistic farm metrics and forecasts, and the lake
run end to end (datasets metrics/v1, forecast_points/v1 and derived/v1, with the derived
sensors of derived_sensors.yml) with the same commands an
operator types. Prints each command before running it."""

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
# derived/v1: the derived sensors of derived_sensors.yml (VPD, dew point, a meter total),
# computed from the lake's metrics after each of its commits.
DATASETS = ("metrics/v1", "forecast_points/v1", "derived/v1")
FORECAST = "greenhouse-1/air-temp-forecast"


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(*args: str, env: dict[str, str], show_output: bool = True) -> str:
    print(f"$ {shlex.join(args)}", flush=True)
    command = [str(BIN / args[0]), *args[1:]]
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=None)
    if (show_output or result.returncode != 0) and result.stdout.strip():
        # dbt prints its errors on stdout: a failed step shows them even when quiet.
        print(result.stdout.rstrip(), flush=True)
    if result.returncode != 0:
        raise SystemExit(f"demo: `{shlex.join(args)}` exited {result.returncode}")
    return result.stdout


def main() -> None:
    settings = Settings.from_env()
    pgdata = settings.data_root / "postgres"
    env = {**os.environ, "DO_NOT_TRACK": "1", "TSLAKE_DATASETS": ",".join(DATASETS),
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
        (existing,) = conn.execute(
            "select to_regclass('public.forecast_points')").fetchone() or (None,)
        if existing is None:
            step(f"Synthetic forecasts: {len(synthetic.FORECAST_SERIES)} series, issued every "
                 f"{synthetic.FORECAST_ISSUE_HOURS} h, {synthetic.FORECAST_HORIZON_HOURS} "
                 f"hourly points ahead, {DAYS} days of issues")
            started = time.monotonic()
            synthetic.create_forecast_points_table(conn)
            rows = synthetic.fill_forecasts(conn, days=DAYS)
            print(f"{rows:,} rows in {time.monotonic() - started:.1f} s")

    step(f"Backfill {DAYS} days (dbt run --vars ...)")
    started = time.monotonic()
    run("dbt", "run", "--vars", f"{{backfill_days: {DAYS}, replace_existing: true}}", env=env,
        show_output=False)
    print(f"backfill took {time.monotonic() - started:.1f} s")

    step("New readings and a new forecast arrive; an incremental tick (dbt run) exports them")
    with psycopg.connect(autocommit=True) as conn:
        print(f"{synthetic.insert_live(conn, sensors=SENSORS)} live rows and "
              f"{synthetic.issue_forecasts(conn)} forecast points inserted")
    time.sleep(float(env["TSLAKE_REPLICATION_LAG_SECONDS"]) + 1)
    run("dbt", "run", env=env, show_output=False)

    step("The same tick with locking and a JSON summary (tslake tick)")
    with psycopg.connect(autocommit=True) as conn:
        synthetic.insert_live(conn, sensors=SENSORS)
        synthetic.issue_forecasts(conn)
    time.sleep(float(env["TSLAKE_REPLICATION_LAG_SECONDS"]) + 1)
    run("tslake", "tick", env=env)

    today = time.strftime("%Y-%m-%d", time.gmtime())
    step("Compact today's partition: each shard-day's backfill and tick files become one")
    run("tslake", "compact", "--date", today, env=env)

    step("Inspect the lake (tslake inspect), summarised per dataset")
    report = json.loads(run("tslake", "inspect", env=env, show_output=False))
    summary: dict[str, object] = {"hot_path": report["hot_path"]}
    for name in DATASETS:
        dataset = report["datasets"][name]
        dates = sorted(dataset["partitions"])
        summary[name] = {"computed_through_ts": dataset["computed_through_ts"],
                         "partitions": len(dates), "first_date": dates[0],
                         "last_date": dates[-1], "totals": dataset["totals"]}
    print(json.dumps(summary, indent=2))

    step("Read it back: a daily average of one sensor over the last week (tslake query)")
    last = date.fromisoformat(today)
    run("tslake", "query", "--sensor", "greenhouse-1/air-temp-01", "--start",
        str(last - timedelta(days=7)), "--end", str(last + timedelta(days=1)), "--bucket", "1d",
        "--agg", "avg", env=env)

    step("Forecasts too: the next day of one forecast series, every issue (tslake query)")
    forecast = run("tslake", "query", "--dataset", "forecast_points/v1", "--sensor", FORECAST,
                   "--start", str(last + timedelta(days=1)), "--end",
                   str(last + timedelta(days=2)), "--format", "csv", env=env,
                   show_output=False).splitlines()
    print("\n".join([*forecast[:6], f"... {len(forecast) - 1} rows"]))
    run("tslake", "query", "--dataset", "forecast_points/v1", "--sensor", FORECAST,
        "--start", str(last + timedelta(days=1)), "--end", str(last + timedelta(days=2)),
        "--bucket", "6h", "--agg", "avg", env=env)

    step("Derived sensors: the greenhouse's hourly vapour pressure deficit (derived/v1)")
    run("tslake", "query", "--dataset", "derived/v1", "--sensor", "greenhouse-1/vpd-kpa",
        "--start", str(last), "--end", str(last + timedelta(days=1)), "--bucket", "1h",
        "--agg", "avg", env=env)

    for name in DATASETS:
        step(f"Parity of {name}: Postgres vs lake, exact, over the whole lake "
             "(tslake parity --all)")
        report_file = settings.data_root / f"parity-{name.split('/')[0]}.md"
        parity = json.loads(run("tslake", "parity", "--dataset", name, "--all",
                                "--fail-on-mismatch", "--report", str(report_file), env=env,
                                show_output=False))
        print(f"{parity['verdict']}: {parity['totals']['source_rows']:,} Postgres rows, "
              f"{parity['totals']['lake_rows']:,} lake rows in {parity['totals']['groups']} "
              f"day/shard groups ({parity['seconds']} s); report: {report_file}")

    step("Point the same commands at a real Postgres")
    print("export PGHOST=db.example PGPORT=5432 PGDATABASE=farm PGUSER=tslake"
          "   # password in ~/.pgpass\n"
          "# or: export TSLAKE_PG_DSN='host=db.example dbname=farm user=tslake'\n"
          "dbt run    # or: .venv/bin/tslake tick\n"
          "\nReach the demo's database again (e.g. from a new shell, for psql or tslake):\n"
          f'eval "$({BIN}/python -m runner.dev.devdb env --dir {pgdata})"'
          f"   # PGDATABASE={pg_env['PGDATABASE']}\n"
          f"Stop the demo database with: {BIN}/python -m runner.dev.devdb stop --dir {pgdata}")


if __name__ == "__main__":
    main()
