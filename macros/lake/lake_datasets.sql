{#-
    The project's lake datasets: meta.dataset of every enabled model materialized as
    lake_dataset, sorted (what `dbt run` ticks, and what `lake_compact` may compact).
-#}
{% macro lake_datasets() %}
    {%- set names = [] -%}
    {%- for node in graph.nodes.values() -%}
        {%- if node.resource_type == 'model' and node.config.materialized == 'lake_dataset' -%}
            {%- set name = (node.config.meta or {}).get('dataset') -%}
            {%- if name and name not in names -%}
                {%- do names.append(name) -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(names | sort) }}
{% endmacro %}
