{#-
    The rows of one derived sensor (SPEC section 8) from `relation`, input rows with columns
    sensor_id, ts, value, quality, inserted_at (newest versions only), in DuckDB or Postgres
    SQL. `definition`: {id, seconds, inputs: [[alias, sensor_id, agg], ...]};
    `expression_sql`: the expression rendered by runner/derived/expression.py over the
    columns `agg_<alias>`; `bucket_filter`: an optional condition on `bucket` (the buckets to
    compute). A bucket gets a row only when every input has a non-NULL value in it; its
    quality is the smallest among all input rows, its inserted_at the newest.
-#}
{% macro derived_sensor_rows(definition, relation, expression_sql, dialect='duckdb', bucket_filter=none) -%}
    {%- set sensors = [] -%}
    {%- for alias, sensor, agg in definition['inputs'] -%}
        {%- if not modules.re.match('^[a-z_][a-z0-9_]*$', alias) -%}
            {{ exceptions.raise_compiler_error("derived_sensor_rows: alias '" ~ alias ~ "' must be a lowercase identifier") }}
        {%- endif -%}
        {%- do sensors.append(lake_literal(sensor)) -%}
    {%- endfor -%}
    select {{ lake_literal(definition['id']) }} as sensor_id, bucket as ts,
           cast({{ expression_sql }} as double precision) as value, quality, inserted_at
    from (
        select bucket,
               {%- for alias, sensor, agg in definition['inputs'] %}
               {{ derived_aggregate(agg, sensor, dialect) }} as agg_{{ alias }},
               count(value) filter (where sensor_id = {{ lake_literal(sensor) }}) as present_{{ alias }},
               {%- endfor %}
               min(quality) as quality, max(inserted_at) as inserted_at
        from (
            select sensor_id, ts, value, quality, inserted_at,
                   {{ derived_bucket_start('ts', definition['seconds'], dialect) }} as bucket
            from {{ relation }}
            where sensor_id in ({{ sensors | unique | join(', ') }})
        ) as input_rows
        {%- if bucket_filter %}
        where {{ bucket_filter }}
        {%- endif %}
        group by bucket
    ) as buckets
    where {% for alias, sensor, agg in definition['inputs'] -%}
        present_{{ alias }} > 0 {%- if not loop.last %} and {% endif %}
    {%- endfor %}
{%- endmacro %}
