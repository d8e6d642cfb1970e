{#-
    The backfill (SPEC section 5): whole UTC days with ts from 00:00 UTC N days ago up to
    now, rows capped at inserted_at <= the watermark (a fresh stable one on an empty lake),
    each day committed through the manifest on its own, together with the backfill's
    progress record (docs/ARCHITECTURE.md). With replace_existing a day's old files leave
    the manifest in the commit that adds the new ones; without it, days already in the lake
    are skipped. A run that finds an unfinished backfill with the same days and
    replace_existing resumes it: the days it committed are not done again.

    Per day: one series-discovery query, then one task per shard (a streaming COPY from
    Postgres into a sorted Parquet file) that the runner runs concurrently and commits.
-#}
{% macro lake_backfill(model_sql, dataset, run_id, lake, stable) %}
    {%- set days = var('backfill_days') | int -%}
    {%- set replace = var('replace_existing', false) in [true, 'true', 'True', 1] -%}
    {%- if not lake['computed_through_ts'] and stable['prepared_xacts'] | int > 0 -%}
        {{ exceptions.raise_compiler_error("tslake: " ~ dataset ~ ": the lake is empty and " ~ stable['prepared_xacts'] ~ " prepared transaction(s) are in pg_prepared_xacts; their rows' inserted_at is unknown, so no first watermark is safe: COMMIT PREPARED or ROLLBACK PREPARED them, then run the backfill again") }}
    {%- endif -%}
    {%- set cap = lake['computed_through_ts'] or stable['stable_hi'] -%}
    {%- set plan = lake_backfill_plan(dataset, days, replace, stable['postgres_now']) -%}
    {%- set todo = [] -%}
    {%- for day in plan['days'] if not day['done'] and (replace or not day['in_lake']) -%}
        {%- do todo.append(day) -%}
    {%- endfor -%}
    {%- do lake_call('backfill_begin', dataset=dataset, run_id=run_id, generation=lake['generation'],
                     cap=cap, days=days, replace_existing=replace, resume=plan['resume'],
                     first_date=plan['days'][0]['date'], last_date=plan['days'][-1]['date'],
                     todo=todo | map(attribute='date') | list,
                     skipped=plan['days'] | selectattr('in_lake') | rejectattr('done') | map(attribute='date') | list if not replace else [],
                     done=plan['days'] | selectattr('done') | map(attribute='date') | list) -%}
    {%- set hot_path = run_query("select getvariable('tslake_hot_path')").rows[0][0] -%}
    {#- Discovery over the whole window finds each series' first row in it: days before the
        earliest of them hold nothing to read (a table younger than the horizon). -#}
    {%- do set_export_window(hi=cap, ts_from=plan['days'][0]['date'] ~ 'T00:00:00Z', ts_to=plan['days'][-1]['next_date'] ~ 'T00:00:00Z') -%}
    {%- set first_row_date = run_query("select strftime(min(ts), '%Y-%m-%d') from (" ~ model_sql ~ ") as first_rows").rows[0][0] -%}
    {%- for day in todo -%}
        {%- set ts_from = day['date'] ~ 'T00:00:00Z' -%}
        {%- set ts_to = day['next_date'] ~ 'T00:00:00Z' -%}
        {%- set tasks = [] -%}
        {%- set day_series = [] -%}
        {%- if first_row_date is not none and day['date'] >= first_row_date -%}
            {%- do set_export_window(hi=cap, ts_from=ts_from, ts_to=ts_to) -%}
            {%- set day_series = run_query(lake_backfill_series(model_sql)).rows -%}
        {%- endif -%}
        {%- for shard in day_series -%}
            {%- set path = segment_path(hot_path, dataset, day['date'], shard['shard'], 'backfill', run_id) -%}
            {%- do tasks.append({'shard': shard['shard'] | int, 'path': path, 'series': shard['series_count'] | int,
                                 'statements': lake_backfill_task(model_sql, cap, ts_from, ts_to, shard['series'], path)}) -%}
        {%- endfor -%}
        {%- do lake_call('backfill_day', dataset=dataset, run_id=run_id, date=day['date'], tasks=tasks,
                         in_lake=day['in_lake']) -%}
    {%- endfor -%}
    {%- do lake_call('backfill_end', dataset=dataset, run_id=run_id) -%}
{% endmacro %}
