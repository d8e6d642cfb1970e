{#-
    Hand a step to the tslake runner, which SQL should not do: 'run' (the materialization:
    a tick, backfill or repair of one dataset, then its compaction), 'compact' (compaction
    on demand), 'retention' (move or delete partitions past the hot horizon) and
    'derived_parity' (derived/v1's parity, which needs the parsed definitions).
    dbt-duckdb's store hook is the bridge: it hands `request` to runner/dbt_bridge/plugin.py.
-#}
{% macro lake_call(action) %}
    {%- set allowed = ['run', 'compact', 'retention', 'derived_parity'] -%}
    {%- if action not in allowed -%}
        {{ exceptions.raise_compiler_error("lake_call: action '" ~ action ~ "' is not one of " ~ allowed | join(', ')) }}
    {%- endif -%}
    {%- set request = {'action': action} -%}
    {%- do request.update(kwargs) -%}
    {%- do adapter.store_relation('tslake', this, [], '', 'parquet', request) -%}
{% endmacro %}
