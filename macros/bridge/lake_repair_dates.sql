{#-
    The days `dbt run --vars '{repair_dates: [YYYY-MM-DD, ...]}'` re-exports (tslake repair
    sets it): validated, unique and sorted. An empty list means nothing to repair.
-#}
{% macro lake_repair_dates() %}
    {%- set dates = var('repair_dates', none) -%}
    {%- if dates is string or dates is not iterable -%}
        {{ exceptions.raise_compiler_error("repair_dates must be a list of dates like ['2026-01-22'], got '" ~ dates ~ "'") }}
    {%- endif -%}
    {%- set valid = [] -%}
    {%- for date in dates -%}
        {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', date | string) -%}
            {{ exceptions.raise_compiler_error("repair_dates: '" ~ date ~ "' is not a date like 2026-01-22") }}
        {%- endif -%}
        {%- do valid.append(modules.datetime.date.fromisoformat(date | string).isoformat()) -%}
    {%- endfor -%}
    {{ return(valid | unique | sort) }}
{% endmacro %}
