{#-
    Postgres SQL (for postgres_query, `{}` = the version cap) of the latest time of any row
    with version <= cap: a loose index scan over the series column (as postgres_window's
    discovery), then one `order by time desc limit 1` probe per series. The backfill plans
    the days after today up to it, so rows with a future time (forecasts) are exported too.
-#}
{% macro postgres_last_time(schema, table, series_column, time_column, version_column) -%}
    {%- for name in [series_column, time_column, version_column] -%}
        {%- if not modules.re.match('^[a-z_][a-z0-9_]*$', name) -%}
            {{ exceptions.raise_compiler_error("postgres_last_time: column '" ~ name ~ "' must be a lowercase identifier (letters, digits, _)") }}
        {%- endif -%}
    {%- endfor -%}
    {%- set relation = postgres_quote_ident(schema) ~ '.' ~ postgres_quote_ident(table) -%}
    with recursive series as (
        (select "{{ series_column }}" as id from {{ relation }} where "{{ series_column }}" is not null order by 1 limit 1)
        union all
        select (select "{{ series_column }}" from {{ relation }} where "{{ series_column }}" > series.id order by 1 limit 1)
        from series where series.id is not null
    )
    select max(last_row.t) as last_time from series cross join lateral (
        select "{{ time_column }}" as t from {{ relation }}
        where "{{ series_column }}" = series.id and "{{ version_column }}" <= '{}'::timestamptz
        order by "{{ time_column }}" desc limit 1
    ) as last_row
{%- endmacro %}
