{#-
    Join the two sides of a parity comparison (parity_lake_aggregates and
    parity_source_aggregates of the same grain) and say per group: match, missing_in_lake
    (Postgres has rows, the lake none), extra_in_lake, or differs (counts, min/max time or
    checksum disagree). `key_columns` are the key's columns other than series and time,
    which groups carry as key_<column> at grain row_sensor (none at the other grains);
    `row_values`: both sides carry row_values (grain row_sensor), passed on as
    source_values and lake_values.
-#}
{% macro parity_compare(lake, source, key_columns=[], row_values=false) %}
    {%- for name in key_columns -%}
        {%- if not modules.re.match('^[a-z_][a-z0-9_]*$', name | string) -%}
            {{ exceptions.raise_compiler_error("parity_compare: key column '" ~ name ~ "' must be a lowercase identifier (letters, digits, _)") }}
        {%- endif -%}
    {%- endfor %}
    select
        coalesce(src.bucket, lake.bucket) as bucket,
        coalesce(src.series, lake.series) as series,
        coalesce(src.shard, lake.shard) as shard,
        {%- for name in key_columns %}
        coalesce(src."key_{{ name }}", lake."key_{{ name }}") as "key_{{ name }}",
        {%- endfor %}
        src.row_count as source_rows,
        lake.row_count as lake_rows,
        src.min_ts as source_min_ts,
        lake.min_ts as lake_min_ts,
        src.max_ts as source_max_ts,
        lake.max_ts as lake_max_ts,
        src.checksum::varchar as source_checksum,
        lake.checksum::varchar as lake_checksum,
        {%- if row_values %}
        src.row_values as source_values,
        lake.row_values as lake_values,
        {%- endif %}
        case
            when lake.row_count is null then 'missing_in_lake'
            when src.row_count is null then 'extra_in_lake'
            when lake.row_count = src.row_count
                 and lake.min_ts = src.min_ts
                 and lake.max_ts = src.max_ts
                 and lake.checksum = src.checksum then 'match'
            else 'differs'
        end as status
    from ({{ lake }}) as lake
    full outer join ({{ source }}) as src
        on lake.bucket = src.bucket
        and lake.shard = src.shard
        and lake.series is not distinct from src.series
        {%- for name in key_columns %}
        and lake."key_{{ name }}" is not distinct from src."key_{{ name }}"
        {%- endfor %}
{% endmacro %}
