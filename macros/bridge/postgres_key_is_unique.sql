{#-
    Whether a Postgres relation has a unique index (or primary key) whose key columns are
    all among `key`: then no snapshot of it holds two rows with the same key, and a window
    read in one snapshot needs no dedupe. Partial and expression indexes do not count.
    (A TimescaleDB hypertable's unique indexes include its time column and hold across
    chunks; inheritance children that are not partitioned by time have no such guarantee.)
-#}
{% macro postgres_key_is_unique(schema, identifier, key) %}
    {%- for name in key -%}
        {%- if not modules.re.match('^[a-z_][a-z0-9_]*$', name) -%}
            {{ exceptions.raise_compiler_error("postgres_key_is_unique: key column '" ~ name ~ "' must be a lowercase identifier (letters, digits, _)") }}
        {%- endif -%}
    {%- endfor -%}
    {%- set check -%}
        select exists (
            select 1
            from pg_index as i
            where i.indrelid = to_regclass(quote_ident({{ lake_literal(schema) }}) || '.' || quote_ident({{ lake_literal(identifier) }}))
              and i.indisunique
              and i.indpred is null
              and i.indexprs is null
              and not exists (
                  select 1
                  from generate_series(0, i.indnkeyatts - 1) as k(n)
                  join pg_attribute as a on a.attrelid = i.indrelid and a.attnum = i.indkey[k.n]
                  where a.attname <> all (array['{{ key | join("', '") }}'])
              )
        ) as key_is_unique
    {%- endset -%}
    {%- set query = "select key_is_unique from postgres_query('" ~ lake_source_catalog() ~ "', " ~ lake_literal(check) ~ ")" -%}
    {{ return(run_query(query).rows[0][0] | as_bool) }}
{% endmacro %}
