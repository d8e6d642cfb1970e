{#-
    The source rows of the export window, read with ONE postgres_query so that Postgres
    plans the filter itself (index on inserted_at; chunk pruning on ts for TimescaleDB).
    DuckDB's own scan of an attached table would split it into ctid page ranges and read
    the whole table. The bounds are DuckDB variables set by the lake_dataset
    materialization, so the same compiled model serves a tick and every backfill day;
    format() fills them in at bind time as typed timestamptz text.
-#}
{% macro postgres_window(relation, columns, time_column='ts', version_column='inserted_at') %}
    {%- for name in columns + [time_column, version_column] -%}
        {%- if not modules.re.match('^[a-z_][a-z0-9_]*$', name) -%}
            {{ exceptions.raise_compiler_error("postgres_window: column '" ~ name ~ "' must be a lowercase identifier (letters, digits, _)") }}
        {%- endif -%}
    {%- endfor -%}
    {%- set select_list = '"' ~ columns | join('", "') ~ '"' -%}
    {%- set table = postgres_quote_ident(relation.schema) ~ '.' ~ postgres_quote_ident(relation.identifier) -%}
    {%- if lake_export_mode() in ['backfill', 'repair'] -%}
        {%- set predicate -%}
            "{{ time_column }}" >= '{}'::timestamptz and "{{ time_column }}" < '{}'::timestamptz and "{{ version_column }}" <= '{}'::timestamptz
        {%- endset -%}
        {%- set bounds = "getvariable('tslake_window_ts_from'), getvariable('tslake_window_ts_to'), getvariable('tslake_window_hi')" -%}
    {%- else -%}
        {%- set predicate -%}
            "{{ version_column }}" > '{}'::timestamptz and "{{ version_column }}" <= '{}'::timestamptz
        {%- endset -%}
        {%- set bounds = "getvariable('tslake_window_lo'), getvariable('tslake_window_hi')" -%}
    {%- endif -%}
    postgres_query('{{ lake_source_catalog() }}', format({{ lake_literal('select ' ~ select_list ~ ' from ' ~ table ~ ' where ' ~ predicate) }}, {{ bounds }}))
{%- endmacro %}
