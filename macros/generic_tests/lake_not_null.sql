{#-
    `dbt test`: no NULL in a column of a lake_dataset model's committed files (hot and
    cold). The lake is not a DuckDB relation, so this reads the files the manifest lists.
    Usage: columns: [{name: ts, data_tests: [lake_not_null]}]
-#}
{% test lake_not_null(model, column_name) %}
    {%- if not modules.re.match('^[a-z_][a-z0-9_]*$', column_name) -%}
        {{ exceptions.raise_compiler_error("lake_not_null: column '" ~ column_name ~ "' must be a lowercase identifier") }}
    {%- endif -%}
    {%- if not execute -%}
        select 1 as nothing where false
    {%- else -%}
        {%- set lake = lake_committed_files(lake_model_dataset(model)) -%}
        {%- set paths = [] -%}
        {%- for file in (lake['files'] if lake['committed'] else []) if file['on_disk'] -%}
            {%- do paths.append(lake_literal(file['path'])) -%}
        {%- endfor -%}
        {%- if not paths -%}
            select 1 as nothing where false
        {%- else -%}
            select filename, {{ column_name }}
            from read_parquet([{{ paths | join(', ') }}], filename = true, hive_partitioning = false)
            where {{ column_name }} is null
        {%- endif -%}
    {%- endif -%}
{% endtest %}
