{#-
    One input's aggregate over a bucket's rows (`value`, `ts`, `sensor_id` columns), in
    DuckDB or Postgres SQL: `agg` is avg, min, max, sum, count, first or last (first/last:
    the non-NULL value with the smallest/largest ts). NULL values are ignored by all of them;
    NaN counts as a value (it is larger than any number in both engines).
-#}
{% macro derived_aggregate(agg, sensor_id, dialect='duckdb') -%}
    {%- set only = "sensor_id = " ~ lake_literal(sensor_id) ~ " and value is not null" -%}
    {%- if agg in ['avg', 'min', 'max', 'sum'] -%}
        cast({{ agg }}(value) filter (where {{ only }}) as double precision)
    {%- elif agg == 'count' -%}
        cast(count(value) filter (where {{ only }}) as double precision)
    {%- elif agg in ['first', 'last'] and dialect == 'postgres' -%}
        (array_agg(value order by ts {{ 'desc' if agg == 'last' else 'asc' }}) filter (where {{ only }}))[1]
    {%- elif agg in ['first', 'last'] -%}
        {{ 'arg_max' if agg == 'last' else 'arg_min' }}(value, ts) filter (where {{ only }})
    {%- else -%}
        {{ exceptions.raise_compiler_error("derived_aggregate: aggregate '" ~ agg ~ "' is not one of avg, min, max, sum, count, first, last") }}
    {%- endif -%}
{%- endmacro %}
