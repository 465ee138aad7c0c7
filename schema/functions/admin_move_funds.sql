-- Admin loads and unloads in one statement: the Idempotency-Key row, the ledger movement and the exact answer a
-- replay gets, so the account row stays locked only for this statement and its commit.
/*
 * p: {direction: loads|unloads, scope, key, fingerprint, token, user_token, currency_code, amount_minor, exponent}.
 * Returns (status_code, response, replayed):
 *   404, NULL     unknown user; nothing stored, so the key stays free
 *   422, NULL     the key was used with another fingerprint (amount and currency as values)
 *   201 | 409     the answer, stored with the key; a replay returns the stored one
 * A concurrent request with the same key waits on the key's unique index, then reads the stored answer.
 */
CREATE OR REPLACE FUNCTION admin_move_funds(p jsonb) RETURNS TABLE (status_code int, response jsonb, replayed boolean)
LANGUAGE plpgsql
-- Key lookups only: jit_decide.sql says why a cached plan must not scan a table whole.
SET enable_seqscan = off SET jit = off AS $$
DECLARE
  v_kind text := CASE p->>'direction' WHEN 'loads' THEN 'load' WHEN 'unloads' THEN 'unload' END;
  v_exponent int := (p->>'exponent')::int;
  v_currency text := p->>'currency_code';
  k idempotency_keys;
  r jsonb;
  v_status int;
  v_body jsonb;
BEGIN
  IF v_kind IS NULL THEN RAISE EXCEPTION 'admin_move_funds: unknown direction %', p->>'direction'; END IF;
  -- Users are never deleted, so this check cannot go stale before the movement below.
  IF NOT EXISTS (SELECT 1 FROM users WHERE token = p->>'user_token') THEN
    RETURN QUERY SELECT 404, NULL::jsonb, false;
    RETURN;
  END IF;
  INSERT INTO idempotency_keys (scope, key, fingerprint) VALUES (p->>'scope', p->>'key', p->>'fingerprint')
  ON CONFLICT DO NOTHING;
  IF NOT FOUND THEN
    SELECT * INTO k FROM idempotency_keys ik WHERE ik.scope = p->>'scope' AND ik.key = p->>'key';
    IF k.fingerprint <> p->>'fingerprint' THEN
      RETURN QUERY SELECT 422, NULL::jsonb, true;
    ELSE
      RETURN QUERY SELECT k.status_code, k.response, true;
    END IF;
    RETURN;
  END IF;

  r := ledger_admin_move(jsonb_build_object('user_token', p->>'user_token', 'currency_code', v_currency,
    'amount_minor', p->>'amount_minor', 'effect_key', 'admin:' || (p->>'scope') || ':' || (p->>'key'), 'reference', p->>'token'), v_kind);
  IF r->>'status' = 'declined' THEN
    v_status := 409;
    v_body := jsonb_build_object('statusCode', 409, 'error', 'Conflict', 'code', r->>'reason',
      'message', CASE r->>'reason' WHEN 'INSUFFICIENT_FUNDS' THEN 'available balance is lower than the amount'
                                   WHEN 'CLOSED_ACCOUNT' THEN 'the user is CLOSED' ELSE r->>'reason' END);
  ELSIF r->>'status' IN ('applied', 'duplicate') THEN
    v_status := 201;
    v_body := jsonb_build_object('token', p->>'token', 'user_token', p->>'user_token',
      'amount', format_minor((p->>'amount_minor')::bigint, v_exponent), 'currency_code', v_currency,
      'balances', jsonb_build_object(v_currency, (
        SELECT jsonb_build_object('currency_code', a.currency_code,
          'available_balance', format_minor(a.credits_posted - a.debits_posted - a.debits_pending, v_exponent),
          'ledger_balance', format_minor(a.credits_posted - a.debits_posted, v_exponent),
          'pending_holds', format_minor(a.debits_pending, v_exponent))
        FROM accounts a WHERE a.id = (r->'account'->>'account_id')::bigint)));
  ELSE
    RAISE EXCEPTION 'admin_move_funds: unexpected ledger result %', r;
  END IF;
  UPDATE idempotency_keys ik SET status_code = v_status, response = v_body WHERE ik.scope = p->>'scope' AND ik.key = p->>'key';
  RETURN QUERY SELECT v_status, v_body, false;
END $$;
