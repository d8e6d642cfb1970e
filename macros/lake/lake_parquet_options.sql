{#-
    The COPY options of every lake file, in one place. Snappy, measured against zstd
    (default level and level 1), lz4_raw and uncompressed on 10M rows: reader scans 28%
    faster, hourly aggregation 17% faster and one-sensor reads 18% faster than zstd, the
    cheapest to write, for files 23% larger (docs/ARCHITECTURE.md, "Reader layout").
-#}
{% macro lake_parquet_options() -%}
    format parquet, compression snappy
{%- endmacro %}
