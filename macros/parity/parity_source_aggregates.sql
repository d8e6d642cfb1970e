{#-
    Postgres's side of a parity comparison, aggregated IN Postgres (one postgres_query, so
    only one row per group crosses the wire): per bucket and sensor (or per bucket and
    shard for grain day_shard) the row count, min/max ts and the sum of row checksums, over
    rows with ts_from <= ts < ts_to and inserted_at <= watermark (in-flight rows are left
    out). The shard uses the lake's formula, md5 in Postgres. Arguments are DuckDB
    expressions (literals or getvariable(...)); `sensors` is a VARCHAR[] expression that
    reaches Postgres hex-encoded, so no sensor id is ever part of SQL text.
-#}
{% macro parity_source_aggregates(schema, table, grain, ts_from, ts_to, watermark, shards, sensors=none, shard_filter=none) %}
    {%- if grain not in ['day_shard', 'day_sensor', 'hour_sensor', 'row_sensor'] -%}
        {{ exceptions.raise_compiler_error("parity_source_aggregates: grain '" ~ grain ~ "' is not one of day_shard, day_sensor, hour_sensor, row_sensor") }}
    {%- endif -%}
    {%- if not schema or not table -%}
        {{ exceptions.raise_compiler_error("parity_source_aggregates: schema and table of the Postgres source are required") }}
    {%- endif -%}
    {%- set shard_expression = "(('x' || left(md5(sensor_id), 8))::bit(32)::bigint % " ~ (shards | int) ~ ")::integer" -%}
    {%- set query -%}
        select bucket, {{ 'null::text' if grain == 'day_shard' else 'sensor_id' }} as sensor_id, shard,
               sum(row_count)::bigint as row_count, min(min_ts) as min_ts, max(max_ts) as max_ts,
               sum(checksum)::text as checksum
        from (
            select bucket, sensor_id, {{ shard_expression }} as shard, row_count, min_ts, max_ts, checksum
            from (
                select {{ parity_bucket(grain) }} as bucket, sensor_id, count(*) as row_count,
                       min(ts) as min_ts, max(ts) as max_ts,
                       sum({{ parity_row_hash_postgres() }}) as checksum
                from {{ postgres_quote_ident(schema) }}.{{ postgres_quote_ident(table) }}
                where ts >= '{}'::timestamptz and ts < '{}'::timestamptz
                  and inserted_at <= '{}'::timestamptz
                  {%- if sensors is not none %}
                  and sensor_id = any(array(select jsonb_array_elements_text(convert_from(decode('{}', 'hex'), 'UTF8')::jsonb)))
                  {%- endif %}
                group by 1, 2
            ) as per_sensor
        ) as placed
        {%- if shard_filter is not none %}
        where shard in ({{ shard_filter | map('int') | join(', ') or 'null' }})
        {%- endif %}
        group by 1, 2, 3
    {%- endset -%}
    {%- set arguments = [ts_from, ts_to, watermark] + ([] if sensors is none else ['hex(to_json(' ~ sensors ~ ')::varchar)']) -%}
    select
        bucket::timestamp as bucket,
        sensor_id::varchar as sensor_id,
        shard::integer as shard,
        row_count::bigint as row_count,
        min_ts::timestamptz as min_ts,
        max_ts::timestamptz as max_ts,
        checksum::hugeint as checksum
    from postgres_query('{{ lake_source_catalog() }}', format({{ lake_literal(query) }}, {{ arguments | join(', ') }}))
{% endmacro %}
