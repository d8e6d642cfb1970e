{#-
    Ask the tslake runner to do a step SQL should not do: 'open' (lock, leftovers),
    'prepare' (create partition directories), 'publish' (fsync, rename, manifest commit;
    `replace_files` drops a compaction's inputs in the same commit), 'retention' (move or
    delete partitions past the hot horizon), 'backfill_begin' / 'backfill_day' /
    'backfill_end' (run a backfill day's shard tasks concurrently, commit the day with the
    progress record; runner/ops/backfill.py).
    dbt-duckdb's store hook is the bridge: it hands `request` to runner/dbt_bridge/plugin.py.
-#}
{% macro lake_call(action) %}
    {%- set allowed = ['open', 'prepare', 'publish', 'retention', 'backfill_begin', 'backfill_day', 'backfill_end'] -%}
    {%- if action not in allowed -%}
        {{ exceptions.raise_compiler_error("lake_call: action '" ~ action ~ "' is not one of " ~ allowed | join(', ')) }}
    {%- endif -%}
    {%- set request = {'action': action} -%}
    {%- do request.update(kwargs) -%}
    {%- do adapter.store_relation('tslake', this, [], '', 'parquet', request) -%}
{% endmacro %}
