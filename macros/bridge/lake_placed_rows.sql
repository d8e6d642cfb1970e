{#-
    The rows of `relation` with the lake's partition columns added: `date`, the UTC date
    of the declared time column, and `shard`, the shard of the declared series column.
-#}
{% macro lake_placed_rows(relation) %}
    {%- set declaration = lake_declaration() -%}
    select
        *,
        {{ utc_date(declaration['time']) }} as date,
        {{ shard_of(declaration['series']) }} as shard
    from {{ relation }}
{% endmacro %}
