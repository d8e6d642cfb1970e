{#-
    The two WAL positions that make a hot standby a safe source (README, "A hot standby as
    the source"), each one postgres_query on `catalog`, the positions as byte offsets (text,
    since a pg_lsn can exceed a BIGINT) so the runner can compare them.

    primary_wal_position: the primary's insert and flush positions, read after its
    open-transaction cap: every transaction committed before the cap has its commit record
    below the insert position. A synchronous commit is flushed before it is visible, an
    asynchronous one within 3 x wal_writer_delay, but other records may sit unflushed (so
    unsent) above them for as long as the primary is idle: the runner waits for the insert
    position, or for the flush position read once that delay has passed. With the page and
    segment sizes, so the runner can step back over a page header the insert position may
    point past.

    standby_replay_position: how far the standby has replayed, and whether replay is paused.

    postgres_in_recovery: whether the server is a hot standby (checked before a run's first
    write: without TSLAKE_PRIMARY_DSN a standby source is refused).
-#}
{% macro postgres_in_recovery(catalog) -%}
    select in_recovery from postgres_query('{{ catalog }}', {{ lake_literal("select pg_is_in_recovery() as in_recovery") }})
{%- endmacro %}

{% macro primary_wal_position(catalog) -%}
    select wal_insert_bytes, wal_flush_bytes, wal_block_size, wal_segment_size, wal_writer_delay_ms
    from postgres_query('{{ catalog }}', {{ lake_literal("select (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::text as wal_insert_bytes, (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::text as wal_flush_bytes, current_setting('wal_block_size')::int as wal_block_size, (select setting::bigint from pg_settings where name = 'wal_segment_size') as wal_segment_size, (select setting::int from pg_settings where name = 'wal_writer_delay') as wal_writer_delay_ms") }})
{%- endmacro %}

{% macro standby_replay_position(catalog) -%}
    select replay_bytes, replay_paused
    from postgres_query('{{ catalog }}', {{ lake_literal("select (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::text as replay_bytes, pg_is_wal_replay_paused() as replay_paused") }})
{%- endmacro %}
