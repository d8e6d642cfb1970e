{#-
    `dbt test`: Postgres <-> lake parity of a lake_dataset model over the whole lake horizon
    (every committed partition, hot and cold; Postgres rows with version <= the watermark),
    per UTC day and shard: row count, min/max time and the checksum (parity_row_hash) of
    the newest versions, by the model's declaration (config.meta and column data_types).
    One failing row per differing day/shard and per committed file missing on disk;
    `tslake parity --dataset D --all` drills into them. The Postgres table is the model's
    meta.source (<dbt source>.<table>) unless source_name and source_table are given.
    Usage (models/lake/_lake__models.yml):
        data_tests: [lake_parity]
-#}
{% test lake_parity(model, source_name=none, source_table=none) %}
    {%- if not execute -%}
        select 1 as nothing where false
    {%- else -%}
        {%- set declaration = parity_model_declaration(model) -%}
        {%- if source_name is none or source_table is none -%}
            {%- set parts = (declaration['source'] or '') | string -%}
            {%- if parts.split('.') | length != 2 -%}
                {{ exceptions.raise_compiler_error("lake_parity: model " ~ model.identifier ~ " has meta.source '" ~ parts ~ "', not <source>.<table>: declare it, or give source_name and source_table") }}
            {%- endif -%}
            {%- set source_name, source_table = parts.split('.') -%}
        {%- endif -%}
        {%- set relation = source(source_name, source_table) -%}
        {%- set lake = lake_committed_files(declaration['dataset']) -%}
        {%- if not lake['committed'] -%}
            select 1 as nothing where false
        {%- else -%}
            {%- set present = lake['files'] | selectattr('on_disk') | list -%}
            {%- set missing = lake['files'] | rejectattr('on_disk') | list -%}
            {%- set single = [] -%}
            {%- set multi = [] -%}
            {%- for file in present -%}
                {%- do (single if file['files_in_shard_day'] == 1 else multi).append(lake_literal(file['path'])) -%}
            {%- endfor -%}
            {%- set ts_from = lake_literal(lake['first_date'] ~ 'T00:00:00Z') ~ '::timestamptz' -%}
            {%- set ts_to = "'infinity'::timestamptz" -%}
            {%- set watermark = lake_literal(lake['watermark']) ~ '::timestamptz' -%}
            {%- set in_flight = parity_source_inflight(declaration, relation.schema, relation.identifier, ts_from, ts_to, watermark) -%}
            with compared as (
                {{ parity_compare(
                    parity_lake_aggregates(declaration, 'day_shard', ('[' ~ single | join(', ') ~ ']') if single else none,
                                           ('[' ~ multi | join(', ') ~ ']') if multi else none,
                                           ts_from, ts_to, lake['shards'], exclude=in_flight),
                    parity_source_aggregates(declaration, relation.schema, relation.identifier, 'day_shard',
                                             ts_from, ts_to, watermark, lake['shards'])) }}
            )
            select
                strftime(bucket, '%Y-%m-%d') as date,
                shard,
                status,
                source_rows,
                lake_rows,
                source_checksum,
                lake_checksum,
                null::varchar as path
            from compared
            where status <> 'match'
            {%- for file in missing %}
            union all
            select {{ lake_literal(file['date']) }}, {{ file['shard'] }}, 'committed_file_missing',
                   null, null, null, null, {{ lake_literal(file['path']) }}
            {%- endfor %}
        {%- endif -%}
    {%- endif -%}
{% endtest %}
