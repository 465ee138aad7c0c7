-- jit_decide also returns whether its ledger effect drove the account negative (a stand-in, or a clearing larger than
-- its hold, reaching the gateway), so that the gateway counts it in ledger_overdrawn_total as the webhook path does
-- (DESIGN §3 invariant 2). A new output column needs DROP + CREATE; callers selecting the first three are unaffected.
DROP FUNCTION jit_decide(jsonb);
CREATE FUNCTION jit_decide(p jsonb) RETURNS TABLE (status_code int, response text, replay boolean, overdrawn boolean) LANGUAGE plpgsql AS $$
DECLARE
  v_token text := p->'echo'->>'token';
  v_method text := p->'echo'->>'method';
  v_mode text := p->>'mode';
  v_exponent int := coalesce((p->>'exponent')::int, 2);
  v_amount numeric := coalesce((p->>'amount_text')::numeric, 0);
  v_reason text := p->>'decline_reason';
  v_memo text := p->>'memo';
  v_result text := 'approved';
  v_approved_minor bigint;
  v_fields jsonb;
  v_body jsonb;
  v_text text;
  r jsonb;
BEGIN
  IF p ? 'lock_timeout_ms' THEN
    -- The gateway's deadline bounds lock waits (e.g. a hot account); past it the whole statement rolls back.
    PERFORM set_config('lock_timeout', (p->>'lock_timeout_ms') || 'ms', true);
  END IF;
  INSERT INTO decisions (jit_token, method, user_token, card_token, transaction_token, result, status_code, response, currency_code)
  VALUES (v_token, v_method, p->'echo'->>'user_token', p->>'card_token', p->>'transaction_token', 'pending', 0, '', p->>'currency_code')
  ON CONFLICT (jit_token) DO NOTHING;
  IF NOT FOUND THEN
    RETURN QUERY SELECT d.status_code, d.response, true, false FROM decisions d WHERE d.jit_token = v_token;
    RETURN;
  END IF;

  v_fields := jsonb_build_object('amount', v_amount);
  IF v_mode = 'decide' AND v_reason IS NULL THEN
    r := ledger_apply(p->'effect');
    IF r->>'status' IN ('declined', 'no_account') THEN
      v_reason := r->>'reason';
      v_memo := 'declined by the ledger: ' || lower(replace(v_reason, '_', ' '));
    ELSE
      v_approved_minor := (r->>'approved_minor')::bigint;
      v_fields := jsonb_build_object('amount', minor_to_numeric(v_approved_minor, v_exponent));
      IF (r->>'status') = 'duplicate' THEN v_memo := 'already applied by an earlier message'; END IF;
    END IF;
  ELSIF v_mode = 'effect' THEN
    r := ledger_apply(p->'effect');
    v_result := 'recorded';
  ELSIF v_mode = 'inquiry' AND v_reason IS NULL THEN
    SELECT jsonb_build_object(a.currency_code, account_balances(a.id, v_exponent) - 'pending_holds') INTO v_body
      FROM accounts a WHERE a.user_token = p->'echo'->>'user_token' AND a.currency_code = p->>'currency_code';
    v_fields := v_fields || jsonb_build_object('balances', coalesce(v_body, jsonb_build_object(p->>'currency_code',
      jsonb_build_object('currency_code', p->>'currency_code', 'available_balance', 0, 'ledger_balance', 0))));
  ELSIF v_mode = 'record' THEN
    v_result := 'recorded';
  END IF;

  IF v_reason IS NOT NULL THEN
    v_result := 'declined';
    v_fields := jsonb_build_object('amount', v_amount, 'decline_reason', v_reason);
  END IF;
  IF v_memo IS NOT NULL THEN v_fields := v_fields || jsonb_build_object('memo', v_memo); END IF;
  v_body := jsonb_build_object('jit_funding', (p->'echo') || v_fields);
  v_text := v_body::text;

  UPDATE decisions d SET result = v_result, decline_reason = v_reason, status_code = CASE WHEN v_reason IS NULL THEN 200 ELSE 402 END,
    response = v_text, amount_minor = v_approved_minor
   WHERE d.jit_token = v_token;
  PERFORM emit('jit.' || CASE WHEN v_reason IS NULL THEN 'approved' ELSE 'declined' END || '.' || v_method,
    jsonb_build_object('jit_token', v_token, 'method', v_method, 'result', v_result, 'decline_reason', v_reason,
      'user_token', p->'echo'->>'user_token', 'card_token', p->>'card_token', 'request', p->'request', 'response', v_body,
      'overdrawn', coalesce((r->>'overdrawn')::boolean, false)));
  RETURN QUERY SELECT CASE WHEN v_reason IS NULL THEN 200 ELSE 402 END, v_text, false,
    coalesce((r->>'status') = 'applied' AND (r->>'overdrawn')::boolean, false);
END $$;
