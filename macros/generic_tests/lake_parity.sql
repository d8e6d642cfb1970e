{#-
    `dbt test`: Postgres <-> lake parity of a lake_dataset model over the whole lake horizon
    (every committed partition, hot and cold; Postgres rows with inserted_at <= the
    watermark), per UTC day and shard: row count, min/max ts and the checksum of
    (ts, value, quality) of the newest versions. One failing row per differing day/shard
    and per committed file missing on disk; `tslake parity --all` drills into them.
    Usage (models/lake/_lake__models.yml):
        data_tests: [{lake_parity: {source_name: postgres, source_table: metrics}}]
-#}
{% test lake_parity(model, source_name, source_table) %}
    {%- set relation = source(source_name, source_table) -%}
    {%- if not execute -%}
        select 1 as nothing where false
    {%- else -%}
        {%- set dataset = lake_model_dataset(model) -%}
        {%- set lake = lake_committed_files(dataset) -%}
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
            {%- set in_flight = parity_source_inflight(relation.schema, relation.identifier, ts_from, ts_to, watermark) -%}
            with compared as (
                {{ parity_compare(
                    parity_lake_aggregates('day_shard', ('[' ~ single | join(', ') ~ ']') if single else none,
                                           ('[' ~ multi | join(', ') ~ ']') if multi else none,
                                           ts_from, ts_to, lake['shards'], exclude=in_flight),
                    parity_source_aggregates(relation.schema, relation.identifier, 'day_shard',
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
