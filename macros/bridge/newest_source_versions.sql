{#-
    newest_versions() for a lake model's window, skipped when the model's Postgres source
    has a unique key within the declared key (postgres_key_is_unique): a window is read in one
    snapshot, so it then holds one version per key already. Skipping it saves DuckDB a
    hash aggregate per row, and keeps -0.0 exact (DuckDB 1.5 rewrites the row_number()
    dedupe into arg_max over a struct, which turns -0.0 into 0.0). The source is found
    through the model's upstream staging model; anything else keeps the dedupe.
-#}
{% macro newest_source_versions(relation) %}
    {%- set declaration = lake_declaration() -%}
    {%- set key = declaration['key'] -%}
    {%- set version_column = declaration['version'] -%}
    {%- set sources = [] -%}
    {%- if execute -%}
        {%- for upstream in model.depends_on.nodes -%}
            {%- set parents = [upstream] if upstream.startswith('source.') else graph.nodes[upstream].depends_on.nodes -%}
            {%- for parent in parents if parent.startswith('source.') -%}
                {%- do sources.append(graph.sources[parent]) -%}
            {%- endfor -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if sources | length == 1 and postgres_key_is_unique(sources[0].schema, sources[0].identifier, key) -%}
        select * from {{ relation }}
    {%- else -%}
        {{ newest_versions(relation, key=key, version_column=version_column) }}
    {%- endif -%}
{% endmacro %}
