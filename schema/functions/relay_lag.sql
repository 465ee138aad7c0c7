-- How far the event relay (src/event-relay.ts) is behind: the committed decisions and transfers after its cursor,
-- counted up to p_count_limit, and the age of the next of them in publishing order (xid, source, key), the order in
-- which the relay's pages read them. Each is a range scan of an xid index from the cursor, bounded, so that a large
-- backlog is not read whole at every sample.
CREATE OR REPLACE FUNCTION relay_lag(p_count_limit int, OUT backlog int, OUT lag_seconds float8) LANGUAGE plpgsql STABLE
-- Range scans only, whatever the statistics say, and never worth a JIT compilation (jit_decide.sql says why).
SET enable_seqscan = off SET jit = off AS $$
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
  backlog := coalesce(backlog, 0);
  lag_seconds := greatest(0, coalesce(lag_seconds, 0));
END $$;
