{#-
    The lake_dataset materialization: the model's SQL is the projection of one export
    window (rows placed in their date and shard); the runner does the rest in one call
    (runner/dbt_bridge/plugin.py): a tick (default), a backfill (`backfill_days`) or a
    repair (`repair_dates`) of the model's dataset, then the compaction its trigger asks
    for, each step committed through the manifest. Nothing is stored in DuckDB.
-#}
{% materialization lake_dataset, adapter='duckdb' %}
    {%- set declaration = lake_declaration() -%}
    {%- set mode = lake_export_mode() -%}

    {{ run_hooks(pre_hooks) }}
    {%- do lake_call('run', dataset=declaration['dataset'], mode=mode, model_sql=sql,
                     run_id=lake_run_id(),
                     backfill_days=var('backfill_days') | int if mode == 'backfill' else none,
                     replace_existing=var('replace_existing', false) in [true, 'true', 'True', 1],
                     repair_dates=lake_repair_dates() if mode == 'repair' else none) -%}
    {#- dbt reports the node's result from the 'main' statement: the committed generation,
        which the runner set on this connection. -#}
    {% call statement('main') -%}
        select getvariable('tslake_generation')::bigint as manifest_generation
    {%- endcall %}
    {{ run_hooks(post_hooks) }}

    {{ return({'relations': []}) }}
{% endmaterialization %}
