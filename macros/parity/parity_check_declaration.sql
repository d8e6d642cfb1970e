{#-
    Validate the dataset declaration the parity macros take (the same everywhere):
    {key: [column, ...], series: column, time: column, version: column,
     columns: [[name, lake type], ...]} in file order (runner/core/datasets.py's
    DatasetSpec, or a lake model's meta and columns: parity_model_declaration). Renders
    nothing; raises a compiler error naming `macro_name` and the bad value.
-#}
{% macro parity_check_declaration(declaration, macro_name) -%}
    {%- set lake_types = ['bigint', 'boolean', 'date', 'double', 'int', 'integer', 'smallint', 'timestamptz', 'varchar'] -%}
    {%- if declaration is not mapping -%}
        {{ exceptions.raise_compiler_error(macro_name ~ ": declaration must be a mapping with key, series, time, version and columns") }}
    {%- endif -%}
    {%- for field in ['key', 'series', 'time', 'version', 'columns'] -%}
        {%- if not declaration.get(field) -%}
            {{ exceptions.raise_compiler_error(macro_name ~ ": the declaration has no '" ~ field ~ "' (it needs key, series, time, version and columns)") }}
        {%- endif -%}
    {%- endfor -%}
    {%- set names = [] -%}
    {%- for column in declaration['columns'] -%}
        {%- if column is string or column | length != 2 -%}
            {{ exceptions.raise_compiler_error(macro_name ~ ": column " ~ column ~ " is not a [name, lake type] pair") }}
        {%- endif -%}
        {%- if not modules.re.match('^[a-z_][a-z0-9_]*$', column[0] | string) -%}
            {{ exceptions.raise_compiler_error(macro_name ~ ": column '" ~ column[0] ~ "' must be a lowercase identifier (letters, digits, _)") }}
        {%- endif -%}
        {%- if column[1] not in lake_types -%}
            {{ exceptions.raise_compiler_error(macro_name ~ ": column " ~ column[0] ~ " has lake type '" ~ column[1] ~ "', not one of " ~ lake_types | join(', ')) }}
        {%- endif -%}
        {%- do names.append(column[0]) -%}
    {%- endfor -%}
    {%- if declaration['key'] is string -%}
        {{ exceptions.raise_compiler_error(macro_name ~ ": key must be a list of columns, like ['sensor_id', 'ts']") }}
    {%- endif -%}
    {%- for name in declaration['key'] + [declaration['series'], declaration['time'], declaration['version']] -%}
        {%- if name not in names -%}
            {{ exceptions.raise_compiler_error(macro_name ~ ": '" ~ name ~ "' is not one of the declared columns " ~ names | join(', ')) }}
        {%- endif -%}
    {%- endfor -%}
    {%- if declaration['series'] not in declaration['key'] or declaration['time'] not in declaration['key'] or declaration['version'] in declaration['key'] -%}
        {{ exceptions.raise_compiler_error(macro_name ~ ": the key " ~ declaration['key'] | join(', ') ~ " must hold the series and time columns and not the version column") }}
    {%- endif -%}
{%- endmacro %}
