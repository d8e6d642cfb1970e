{#-
    The body of every lake model: the rows of one export window (`window_relation`, the
    dataset's staging model), newest version per declared key (newest_source_versions),
    placed in their partition: `date`, the UTC date of the declared time column, and
    `shard`, the shard of the declared series column. The lake_dataset materialization
    hands the compiled SQL to the runner, which writes and publishes it.
-#}
{% macro lake_dataset_rows(window_relation) %}
    {%- set declaration = lake_declaration() -%}
with window_rows as (

    select * from {{ window_relation }}

),

newest as (

    {{ newest_source_versions('window_rows') }}

),

placed as (

    select
        *,
        {{ utc_date(declaration['time']) }} as date,
        {{ shard_of(declaration['series']) }} as shard
    from newest

)

select * from placed
{% endmacro %}
