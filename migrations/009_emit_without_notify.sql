-- A NOTIFY in every decision's transaction halved throughput: at commit PostgreSQL serializes notifying
-- transactions on one global queue lock (pgbench, jit_decide on 1900 accounts, 10 clients: 446-485 tps with it,
-- 1060-1082 tps without). The relay is woken in-process instead, and polls for rows written by other instances.
CREATE OR REPLACE FUNCTION emit(p_routing_key text, p_payload jsonb) RETURNS void LANGUAGE sql AS $$
  INSERT INTO outbox (routing_key, payload) VALUES (p_routing_key, p_payload);
$$;
