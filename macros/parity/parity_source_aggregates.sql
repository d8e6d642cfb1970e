{#-
    Postgres's side of a parity comparison, aggregated IN Postgres (one postgres_query, so
    only one row per group crosses the wire): per bucket, series and shard (the series
    NULL at grain day_shard; at grain row_sensor also the key's other columns, as
    key_<column>) the row count, min/max of the time column and the sum of row checksums,
    over rows with ts_from <= time < ts_to and version <= watermark (in-flight rows are
    left out). `declaration` is the dataset's (parity_check_declaration). The shard uses
    the lake's formula, md5 in Postgres. Arguments are DuckDB expressions (literals or
    getvariable(...)); `sensors` is a VARCHAR[] expression of series ids that reaches
    Postgres hex-encoded, so no id is ever part of SQL text.
-#}
{% macro parity_source_aggregates(declaration, schema, table, grain, ts_from, ts_to, watermark, shards, sensors=none, shard_filter=none) %}
    {{- parity_check_declaration(declaration, 'parity_source_aggregates') -}}
    {%- if grain not in ['day_shard', 'day_sensor', 'hour_sensor', 'row_sensor'] -%}
        {{ exceptions.raise_compiler_error("parity_source_aggregates: grain '" ~ grain ~ "' is not one of day_shard, day_sensor, hour_sensor, row_sensor") }}
    {%- endif -%}
    {%- if not schema or not table -%}
        {{ exceptions.raise_compiler_error("parity_source_aggregates: schema and table of the Postgres source are required") }}
    {%- endif -%}
    {%- set series = postgres_quote_ident(declaration['series']) -%}
    {%- set time = postgres_quote_ident(declaration['time']) -%}
    {%- set version = postgres_quote_ident(declaration['version']) -%}
    {%- set types = {} -%}
    {%- for column in declaration['columns'] -%}
        {%- do types.update({column[0]: column[1]}) -%}
    {%- endfor -%}
    {%- set extra = [] -%}
    {%- for name in declaration['key'] if grain == 'row_sensor' and name not in [declaration['series'], declaration['time']] -%}
        {%- do extra.append(name) -%}
    {%- endfor -%}
    {%- set shard_expression = "(('x' || left(md5(series), 8))::bit(32)::bigint % " ~ (shards | int) ~ ")::integer" -%}
    {%- set query -%}
        select bucket, {{ 'null::text' if grain == 'day_shard' else 'series' }} as series, shard,
               {%- for name in extra %} key_{{ name }},{% endfor %}
               sum(row_count)::bigint as row_count, min(min_ts) as min_ts, max(max_ts) as max_ts,
               sum(checksum)::text as checksum
               {%- if grain == 'row_sensor' %}, min(row_values) as row_values{% endif %}
        from (
            select bucket, series, {{ shard_expression }} as shard,
                   {%- for name in extra %} key_{{ name }},{% endfor %}
                   row_count, min_ts, max_ts, checksum
                   {%- if grain == 'row_sensor' %}, row_values{% endif %}
            from (
                select {{ parity_bucket(grain, time) }} as bucket, {{ series }} as series,
                       {%- for name in extra %} {{ postgres_quote_ident(name) }} as key_{{ name }},{% endfor %}
                       count(*) as row_count, min({{ time }}) as min_ts, max({{ time }}) as max_ts,
                       sum({{ parity_row_hash_postgres(declaration) }}) as checksum
                       {%- if grain == 'row_sensor' %}, min({{ parity_row_values(declaration) }}) as row_values{% endif %}
                from {{ postgres_quote_ident(schema) }}.{{ postgres_quote_ident(table) }}
                where {{ time }} >= '{}'::timestamptz and {{ time }} < '{}'::timestamptz
                  and {{ version }} <= '{}'::timestamptz
                  {%- if sensors is not none %}
                  and {{ series }} = any(array(select jsonb_array_elements_text(convert_from(decode('{}', 'hex'), 'UTF8')::jsonb)))
                  {%- endif %}
                group by {{ range(1, 3 + extra | length) | join(', ') }}
            ) as per_series
        ) as placed
        {%- if shard_filter is not none %}
        where shard in ({{ shard_filter | map('int') | join(', ') or 'null' }})
        {%- endif %}
        group by {{ range(1, 4 + extra | length) | join(', ') }}
    {%- endset -%}
    {%- set arguments = [ts_from, ts_to, watermark] + ([] if sensors is none else ['hex(to_json(' ~ sensors ~ ')::varchar)']) -%}
    select
        bucket::timestamp as bucket,
        series::varchar as series,
        shard::integer as shard,
        {%- for name in extra %}
        key_{{ name }}::{{ parity_duckdb_type(types[name]) }} as "key_{{ name }}",
        {%- endfor %}
        row_count::bigint as row_count,
        min_ts::timestamptz as min_ts,
        max_ts::timestamptz as max_ts,
        checksum::hugeint as checksum
        {%- if grain == 'row_sensor' %},
        row_values::varchar as row_values
        {%- endif %}
    from postgres_query('{{ lake_source_catalog() }}', format({{ lake_literal(query) }}, {{ arguments | join(', ') }}))
{% endmacro %}
