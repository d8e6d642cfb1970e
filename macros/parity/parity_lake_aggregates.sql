{#-
    The lake's side of a parity comparison, from the committed files only: the newest
    version of each (sensor_id, ts), then the same groups and checksums as
    parity_source_aggregates. `single_files` are files alone in their shard-day (a writer
    keeps one version per key in a file, so they need no dedupe); `multi_files` are the
    files of shard-days with several, deduped across files. Both are VARCHAR[] expressions
    or none. `exclude` is a relation of (sensor_id, ts) keys to leave out (in-flight).
-#}
{% macro parity_lake_aggregates(grain, single_files, multi_files, ts_from, ts_to, shards, exclude=none, sensors=none, shard_filter=none) %}
    {%- if grain not in ['day_shard', 'day_sensor', 'hour_sensor', 'row_sensor'] -%}
        {{ exceptions.raise_compiler_error("parity_lake_aggregates: grain '" ~ grain ~ "' is not one of day_shard, day_sensor, hour_sensor, row_sensor") }}
    {%- endif -%}
    {%- set row_filter -%}
        ts >= {{ ts_from }} and ts < {{ ts_to }}
        {%- if sensors is not none %} and sensor_id in (select unnest({{ sensors }})){% endif %}
    {%- endset -%}
    with lake_rows as (
        {%- if single_files is none and multi_files is none %}
        select null::varchar as sensor_id, null::timestamptz as ts, null::double as value, null::bigint as quality
        where false
        {%- endif %}
        {%- if single_files is not none %}
        select sensor_id, ts, value, quality
        from read_parquet({{ single_files }}, hive_partitioning = false)
        where {{ row_filter }}
        {%- endif %}
        {%- if single_files is not none and multi_files is not none %}
        union all
        {%- endif %}
        {%- if multi_files is not none %}
        select sensor_id, ts, value, quality
        from ({{ newest_versions('(select * from read_parquet(' ~ multi_files ~ ', hive_partitioning = false) where ' ~ row_filter ~ ') as multi_file_rows') }}) as newest
        {%- endif %}
    ),
    kept as (
        select * from lake_rows
        {%- if exclude is not none %}
        anti join ({{ exclude }}) as in_flight using (sensor_id, ts)
        {%- endif %}
    ),
    per_sensor as (
        select
            {{ parity_bucket(grain) }}::timestamp as bucket,
            sensor_id,
            count(*) as row_count,
            min(ts) as min_ts,
            max(ts) as max_ts,
            sum({{ parity_row_hash_duckdb() }}) as checksum
        from kept
        group by all
    ),
    placed as (
        select *, {{ shard_of('sensor_id', shards | int) }} as shard
        from per_sensor
    )
    select
        bucket,
        {{ 'null::varchar' if grain == 'day_shard' else 'sensor_id' }} as sensor_id,
        shard,
        sum(row_count)::bigint as row_count,
        min(min_ts) as min_ts,
        max(max_ts) as max_ts,
        sum(checksum)::hugeint as checksum
    from placed
    {%- if shard_filter is not none %}
    where shard in ({{ shard_filter | map('int') | join(', ') or 'null' }})
    {%- endif %}
    group by 1, 2, 3
{% endmacro %}
