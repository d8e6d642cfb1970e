{#-
    Compaction on demand from dbt (what `tslake compact` does without dbt):

        dbt run-operation lake_compact --args '{dataset: metrics/v1, date: 2026-01-22, min_files: 1}'

    Every argument is optional. `dataset`: one of the enabled datasets (default: all).
    `date`: one UTC date YYYY-MM-DD (default: every hot date). `min_files`: compact
    shard-days with more than this many files (default: TSLAKE_COMPACT_MIN_FILES, the
    trigger a tick uses). The runner validates them, takes the lake's lock and removes
    leftovers of killed runs first, like every write (runner/ops/compaction.py).
-#}
{% macro lake_compact(dataset=none, date=none, min_files=none) %}
    {%- if execute -%}
        {%- do lake_call('compact', dataset=dataset, date=date | string if date is not none else none, min_files=min_files) -%}
    {%- endif -%}
{% endmacro %}
