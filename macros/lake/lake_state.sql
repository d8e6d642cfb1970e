{#-
    What the committed manifest says about a dataset: its generation (for the publish's
    concurrency check) and the watermark `computed_through_ts` (NULL for a new dataset).
-#}
{% macro lake_state(dataset) %}
    {%- set query -%}
        with manifest as (
            select content::json as doc
            from read_text(getvariable('tslake_manifest_path'))
        )
        select
            (doc ->> 'generation')::bigint as generation,
            doc -> 'datasets' -> {{ lake_literal(dataset) }} ->> 'computed_through_ts' as computed_through_ts
        from manifest
    {%- endset -%}
    {%- set row = run_query(query).rows[0] -%}
    {{ return({'generation': row['generation'] | int, 'computed_through_ts': row['computed_through_ts']}) }}
{% endmacro %}
