-- How far the event relay (src/event-relay.ts) is behind: the committed decisions and transfers after its cursor,
-- counted up to p_count_limit, and the age of the older of the next decision and the next transfer it will publish.
-- "After the cursor" is the order and predicate of the relay's page query (after() in src/event-relay.ts). Each
-- sub-select is a range scan of an xid index from the cursor, bounded, so that a large backlog is not read whole at
-- every sample (an exact oldest row would be).
CREATE OR REPLACE FUNCTION relay_lag(p_count_limit int, OUT backlog int, OUT lag_seconds float8) LANGUAGE plpgsql STABLE
-- Index range scans only, whatever the statistics say, and never worth a JIT compilation (jit_decide.sql says why).
SET enable_seqscan = off SET enable_bitmapscan = off SET jit = off AS $$
DECLARE c event_cursor%ROWTYPE;
BEGIN
  SELECT * INTO c FROM event_cursor;
  SELECT least(p_count_limit,
           (SELECT count(*) FROM (SELECT FROM decisions d
              WHERE d.xid >= c.xid AND (d.xid > c.xid OR c.source < 'decision' OR (c.source = 'decision' AND d.jit_token > c.key))
              ORDER BY d.xid LIMIT p_count_limit) x)
           + (SELECT count(*) FROM (SELECT FROM transfers t
              WHERE t.xid >= c.xid AND (t.xid > c.xid OR c.source < 'transfer' OR (c.source = 'transfer' AND t.id > c.key))
              ORDER BY t.xid LIMIT p_count_limit) y)),
         extract(epoch FROM now() - least(
           (SELECT d.created_at FROM decisions d
              WHERE d.xid >= c.xid AND (d.xid > c.xid OR c.source < 'decision' OR (c.source = 'decision' AND d.jit_token > c.key))
              ORDER BY d.xid, d.jit_token LIMIT 1),
           (SELECT t.created_at FROM transfers t
              WHERE t.xid >= c.xid AND (t.xid > c.xid OR c.source < 'transfer' OR (c.source = 'transfer' AND t.id > c.key))
              ORDER BY t.xid, t.id LIMIT 1)))
    INTO backlog, lag_seconds;
  lag_seconds := greatest(0, coalesce(lag_seconds, 0));
END $$;
