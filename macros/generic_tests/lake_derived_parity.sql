{#-
    `dbt test`: derived/v1's parity (SPEC section 8): the definitions recomputed over
    Postgres rows with inserted_at <= the watermark, compared per bucket with the committed
    derived rows (relative 1e-9, NaN = NaN). The definitions must be parsed (their
    expressions are never pasted into SQL), so the runner computes the comparison
    (runner/derived/parity.py) and leaves the differing buckets in a table this selects:
    one failing row per differing (date, sensor_id).
    Usage (models/lake/_lake__models.yml): data_tests: [lake_derived_parity]
-#}
{% test lake_derived_parity(model) %}
    {%- if not execute -%}
        select 1 as nothing where false
    {%- else -%}
        {%- do lake_call('derived_parity', dataset=lake_model_dataset(model)) -%}
        select date, sensor_id, status, source_rows, lake_rows, differing_buckets
        from tslake_derived_parity_failures
    {%- endif -%}
{% endtest %}
