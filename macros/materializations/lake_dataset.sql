{#-
    The lake_dataset materialization: the model's SQL is the projection of one export
    window; this runs it for a tick (default) or for each backfill day, writes Parquet
    and has the runner publish it, then compacts the shard-days that passed the trigger.
    Nothing is stored in DuckDB.
-#}
{% materialization lake_dataset, adapter='duckdb' %}
    {%- set dataset = (config.get('meta') or {}).get('dataset') -%}
    {%- if not dataset -%}
        {{ exceptions.raise_compiler_error("model " ~ this.identifier ~ " has no meta.dataset: set config meta: {dataset: <name like metrics/v1>} in its yml") }}
    {%- endif -%}
    {%- set run_id = lake_run_id() -%}

    {{ run_hooks(pre_hooks) }}
    {%- do lake_call('open', dataset=dataset, run_id=run_id, source=lake_model_source()) -%}
    {%- set lake = lake_state(dataset) -%}
    {%- set stable = stable_watermark() -%}
    {%- if lake_export_mode() == 'backfill' -%}
        {%- do lake_backfill(sql, dataset, run_id, lake, stable) -%}
    {%- elif lake_export_mode() == 'repair' -%}
        {%- do lake_repair(sql, dataset, run_id, lake) -%}
    {%- else -%}
        {%- do lake_tick(sql, dataset, run_id, lake, stable) -%}
    {%- endif -%}
    {#- Compaction keeps up in the same run: shard-days past TSLAKE_COMPACT_MIN_FILES files. -#}
    {%- do lake_compact_dataset(dataset, run_id) -%}
    {#- dbt reports the node's result from the 'main' statement: the committed state. -#}
    {% call statement('main') -%}
        select (content::json ->> 'generation')::bigint as manifest_generation
        from read_text(getvariable('tslake_manifest_path'))
    {%- endcall %}
    {{ run_hooks(post_hooks) }}

    {{ return({'relations': []}) }}
{% endmaterialization %}
