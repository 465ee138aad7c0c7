-- Admin loads and unloads (DESIGN §6): money moves between the program funding account and a user's account as a
-- posted journal entry, exactly once per effect_key, with an outbox event in the same transaction. Same lock order
-- as ledger_apply: the user's account row first (lock_user_account), then one program shard row (ledger_move).

-- The account's raw columns as text (jsonb numbers would lose precision past 2^53 in JavaScript).
CREATE FUNCTION account_state(p_account bigint) RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object('account_id', a.id, 'currency_code', a.currency_code,
    'credits_posted', a.credits_posted::text, 'debits_posted', a.debits_posted::text,
    'credits_pending', a.credits_pending::text, 'debits_pending', a.debits_pending::text)
  FROM accounts a WHERE a.id = p_account $$;

/*
 * p: {user_token, currency_code, amount_minor, effect_key, reference?}. p_kind 'load' credits the user, 'unload'
 * debits it and is refused (nothing written) when available < amount: the check runs under the account's row lock,
 * so concurrent unloads cannot overdraw. A load to a CLOSED user is refused.
 * Returns {status: applied|duplicate|declined|no_account, reason?, amount_minor, account: account_state}.
 */
CREATE FUNCTION ledger_admin_move(p jsonb, p_kind text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_user text := p->>'user_token';
  v_currency text := p->>'currency_code';
  v_amount bigint := (p->>'amount_minor')::bigint;
  v_key text := p->>'effect_key';
  a accounts;
  v_previous jsonb;
  v_result jsonb;
  v_status text;
BEGIN
  IF p_kind NOT IN ('load', 'unload') THEN RAISE EXCEPTION 'unknown admin movement %', p_kind; END IF;
  IF v_amount IS NULL OR v_amount <= 0 THEN RAISE EXCEPTION '%: amount_minor must be positive', p_kind; END IF;
  IF v_key IS NULL THEN RAISE EXCEPTION '%: effect_key is required', p_kind; END IF;
  a := lock_user_account(v_user, v_currency);
  IF a.id IS NULL THEN
    RETURN jsonb_build_object('status', 'no_account', 'amount_minor', 0);
  END IF;
  SELECT result INTO v_previous FROM effects WHERE effect_key = v_key;
  IF FOUND THEN
    RETURN v_previous || jsonb_build_object('status', 'duplicate', 'account', account_state(a.id));
  END IF;
  IF p_kind = 'load' THEN
    SELECT status INTO v_status FROM users WHERE token = v_user;
    IF v_status = 'CLOSED' THEN
      RETURN jsonb_build_object('status', 'declined', 'reason', 'CLOSED_ACCOUNT', 'amount_minor', 0, 'account', account_state(a.id));
    END IF;
  ELSIF available_minor(a) < v_amount THEN
    RETURN jsonb_build_object('status', 'declined', 'reason', 'INSUFFICIENT_FUNDS', 'amount_minor', 0, 'account', account_state(a.id));
  END IF;
  PERFORM ledger_move(a.id, program_account(v_currency, v_user), v_amount,
    CASE p_kind WHEN 'load' THEN 'credit' ELSE 'debit' END, 'posted', p_kind, NULL, NULL, p->>'reference', v_key);
  PERFORM emit('ledger.' || p_kind, jsonb_build_object('user_token', v_user, 'currency_code', v_currency,
    'amount_minor', v_amount, 'token', p->>'reference', 'effect_key', v_key));
  v_result := jsonb_build_object('status', 'applied', 'amount_minor', v_amount, 'account_id', a.id);
  INSERT INTO effects (effect_key, result) VALUES (v_key, v_result);
  RETURN v_result || jsonb_build_object('account', account_state(a.id));
END $$;

CREATE FUNCTION ledger_load(p jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT ledger_admin_move(p, 'load') $$;
CREATE FUNCTION ledger_unload(p jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT ledger_admin_move(p, 'unload') $$;
