{#-
    A row's parity checksum, for `engine` duckdb or postgres: the first 60 bits of md5 over
    the row's binary form, built byte for byte alike on both engines (Postgres with its
    send functions). The hashed columns are the key's columns other than the series (in
    key order), then the value columns (neither key nor version, in declared order): for
    metrics/v1 (ts, value, quality), for forecast_points/v1 (issued_at, ts, value).
    Per lake type, all big-endian:
      timestamptz  int64 microseconds since 2000-01-01 (timestamptz_send)
      double       IEEE-754 bits (float8send); every NaN as the canonical NaN, NULL as a NaN
                   payload no value has, -0.0 as 0.0 (which it equals: DuckDB's window and
                   sort operators may drop the sign)
      integers     int64 (int8send); boolean as 0/1, date as days since 2000-01-01
      varchar      int64 byte length (-1 for NULL), then the UTF-8 bytes
    A column outside the key (which may be NULL) other than double and varchar is followed
    by a NULL flag byte, and a NULL counts as 0. Summed over a group the checksum is
    order-independent, exact, and equal on both sides.
    The Postgres text is embedded in a DuckDB string for postgres_query: no braces, and no
    quotes of its own beyond what lake_literal doubles.
-#}
{% macro parity_row_hash(declaration, engine) -%}
    {{- parity_check_declaration(declaration, 'parity_row_hash') -}}
    {%- if engine not in ['duckdb', 'postgres'] -%}
        {{ exceptions.raise_compiler_error("parity_row_hash: engine '" ~ engine ~ "' is not one of duckdb, postgres") }}
    {%- endif -%}
    {%- set types = {} -%}
    {%- for column in declaration['columns'] -%}
        {%- do types.update({column[0]: column[1]}) -%}
    {%- endfor -%}
    {%- set hashed = [] -%}
    {%- for name in declaration['key'] if name != declaration['series'] -%}
        {%- do hashed.append([name, types[name], true]) -%}
    {%- endfor -%}
    {%- for column in declaration['columns'] if column[0] not in declaration['key'] and column[0] != declaration['version'] -%}
        {%- do hashed.append([column[0], column[1], false]) -%}
    {%- endfor -%}
    {%- set parts = [] -%}
    {%- for name, lake_type, in_key in hashed -%}
        {%- set c = '"' ~ name ~ '"' -%}
        {%- if engine == 'duckdb' -%}
            {%- set flag = ' || (' ~ c ~ ' is null)::utinyint::bit::blob' -%}
            {%- if lake_type == 'double' -%}
                {%- do parts.append('(case when ' ~ c ~ ' is null then 9221120237041090561 when isnan(' ~ c ~ ') then 9221120237041090560 when ' ~ c ~ ' = 0 then 0 else ' ~ c ~ '::double::bit::bigint end)::bit::blob') -%}
            {%- elif lake_type == 'varchar' -%}
                {%- do parts.append('coalesce(octet_length(encode(' ~ c ~ ')), -1)::bigint::bit::blob || coalesce(encode(' ~ c ~ '), \'\'::blob)') -%}
            {%- else -%}
                {%- set number = '(epoch_us(' ~ c ~ ') - 946684800000000)' if lake_type == 'timestamptz'
                                 else '(' ~ c ~ ' - date \'2000-01-01\')::bigint' if lake_type == 'date'
                                 else c ~ '::bigint' -%}
                {%- do parts.append(number ~ '::bit::blob' if in_key else 'coalesce(' ~ number ~ ', 0)::bit::blob' ~ flag) -%}
            {%- endif -%}
        {%- else -%}
            {%- set flag = ' || case when ' ~ c ~ ' is null then decode(\'01\', \'hex\') else decode(\'00\', \'hex\') end' -%}
            {%- if lake_type == 'double' -%}
                {%- do parts.append('case when ' ~ c ~ ' is null then decode(\'7ff8000000000001\', \'hex\') when ' ~ c ~ ' = \'NaN\'::float8 then decode(\'7ff8000000000000\', \'hex\') when ' ~ c ~ ' = 0 then decode(\'0000000000000000\', \'hex\') else float8send(' ~ c ~ '::float8) end') -%}
            {%- elif lake_type == 'varchar' -%}
                {%- do parts.append('int8send(coalesce(octet_length(convert_to(' ~ c ~ ', \'UTF8\'))::int8, -1)) || coalesce(convert_to(' ~ c ~ ', \'UTF8\'), decode(\'\', \'hex\'))') -%}
            {%- elif lake_type == 'timestamptz' -%}
                {%- do parts.append('timestamptz_send(' ~ c ~ ')' if in_key else 'coalesce(timestamptz_send(' ~ c ~ '), decode(\'0000000000000000\', \'hex\'))' ~ flag) -%}
            {%- else -%}
                {%- set number = '(' ~ c ~ ' - date \'2000-01-01\')::int8' if lake_type == 'date'
                                 else c ~ '::int::int8' if lake_type == 'boolean'
                                 else c ~ '::int8' -%}
                {%- do parts.append('int8send(' ~ number ~ ')' if in_key else 'int8send(coalesce(' ~ number ~ ', 0))' ~ flag) -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if engine == 'duckdb' -%}
        ('0x' || left(md5({{ parts | join(' || ') }}), 15))::ubigint::bigint
    {%- else -%}
        ('x' || left(md5({{ parts | join(' || ') }}), 15))::bit(60)::bigint
    {%- endif -%}
{%- endmacro %}
