{#-
    Compaction on demand (what `tslake compact` runs):

        dbt run-operation lake_compact --args '{dataset: metrics/v1, date: 2026-01-22, min_files: 1}'

    Every argument is optional. `dataset`: one of the project's lake datasets (default:
    all). `date`: one UTC date YYYY-MM-DD (default: every hot date). `min_files`: compact
    shard-days with more than this many files (default: TSLAKE_COMPACT_MIN_FILES, the
    trigger a tick uses; `tslake compact` passes 1: everything not yet one file).
    Takes the lake's lock and removes leftovers of killed runs first, like every write.
-#}
{% macro lake_compact(dataset=none, date=none, min_files=none) %}
    {%- set known = lake_datasets() -%}
    {%- if dataset is not none and dataset not in known -%}
        {{ exceptions.raise_compiler_error("lake_compact: dataset '" ~ dataset ~ "' is not one of " ~ known | join(', ')) }}
    {%- endif -%}
    {%- if date is not none and not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', date | string) -%}
        {{ exceptions.raise_compiler_error("lake_compact: date '" ~ date ~ "' is not a UTC date like 2026-01-22 (YYYY-MM-DD)") }}
    {%- endif -%}
    {%- if min_files is not none and (not modules.re.match('^[0-9]+$', min_files | string) or min_files | int < 1) -%}
        {{ exceptions.raise_compiler_error("lake_compact: min_files must be a whole number >= 1, got '" ~ min_files ~ "'") }}
    {%- endif -%}
    {%- if execute -%}
        {%- set run_id = lake_run_id() -%}
        {%- set ns = namespace(shard_days=0) -%}
        {%- for name in ([dataset] if dataset is not none else known) -%}
            {%- do lake_call('open', dataset=name, run_id=run_id) -%}
            {%- set ns.shard_days = ns.shard_days + lake_compact_dataset(name, run_id, none if min_files is none else min_files | int, none if date is none else date | string) -%}
        {%- endfor -%}
        {{ log("tslake: compaction " ~ run_id ~ " merged " ~ ns.shard_days ~ " shard-day(s)", info=True) }}
    {%- endif -%}
{% endmacro %}
