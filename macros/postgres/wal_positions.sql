{#-
    The two WAL positions that make a hot standby a safe source (README, "A hot standby as
    the source"), each one postgres_query on `catalog`, the positions as byte offsets (text,
    since a pg_lsn can exceed a BIGINT) so the runner can compare them.

    primary_wal_position: the primary's insert position, read after its open-transaction
    cap: every transaction committed before the cap was taken has its commit record below
    it (the insert position, not the written one: an asynchronous commit is visible before
    its record is written). With the page size and segment size, so the runner can step
    back over a page header the position may point past on an idle primary.

    standby_replay_position: how far the standby has replayed, and whether replay is paused.
-#}
{% macro primary_wal_position(catalog) -%}
    select wal_insert_bytes, wal_block_size, wal_segment_size
    from postgres_query('{{ catalog }}', {{ lake_literal("select (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::text as wal_insert_bytes, current_setting('wal_block_size')::int as wal_block_size, (select setting::bigint from pg_settings where name = 'wal_segment_size') as wal_segment_size") }})
{%- endmacro %}

{% macro standby_replay_position(catalog) -%}
    select replay_bytes, replay_paused
    from postgres_query('{{ catalog }}', {{ lake_literal("select (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::text as replay_bytes, pg_is_wal_replay_paused() as replay_paused") }})
{%- endmacro %}
