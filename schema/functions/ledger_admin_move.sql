/*
 * An admin load or unload (DESIGN §6): a posted transfer between the program funding account and a user's account,
 * exactly once per effect_key. p: {user_token, currency_code, amount_minor, effect_key, reference?}. p_kind 'load'
 * credits the user, 'unload' debits it and is refused (nothing written) when available < amount: the check runs under
 * the account's row lock, so concurrent unloads cannot overdraw. A load to a CLOSED user is refused.
 * Returns {status: applied|duplicate|declined|no_account, reason?, amount_minor, account: account_state}.
 */
CREATE OR REPLACE FUNCTION ledger_admin_move(p jsonb, p_kind text) RETURNS jsonb LANGUAGE plpgsql
-- Key lookups only: jit_decide.sql says why a cached plan must not scan a table whole.
SET enable_seqscan = off SET jit = off AS $$
DECLARE
  v_user text := p->>'user_token';
  v_currency text := p->>'currency_code';
  v_amount bigint := (p->>'amount_minor')::bigint;
  v_key text := p->>'effect_key';
  a accounts;
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
  IF EXISTS (SELECT 1 FROM transfers WHERE id = v_key) THEN
    RETURN jsonb_build_object('status', 'duplicate', 'amount_minor', v_amount, 'account_id', a.id, 'account', account_state(a.id));
  END IF;
  IF p_kind = 'load' THEN
    SELECT status INTO v_status FROM users WHERE token = v_user;
    IF v_status = 'CLOSED' THEN
      RETURN jsonb_build_object('status', 'declined', 'reason', 'CLOSED_ACCOUNT', 'amount_minor', 0, 'account', account_state(a.id));
    END IF;
  ELSIF available_minor(a) < v_amount THEN
    RETURN jsonb_build_object('status', 'declined', 'reason', 'INSUFFICIENT_FUNDS', 'amount_minor', 0, 'account', account_state(a.id));
  END IF;
  PERFORM ledger_transfer(v_key, 'single', p_kind, a.id, program_account(v_currency, program_shard(v_user)),
    CASE p_kind WHEN 'load' THEN 'credit' ELSE 'debit' END, v_amount, 0, NULL, v_user, v_currency, NULL, NULL, p->>'reference');
  v_result := jsonb_build_object('status', 'applied', 'amount_minor', v_amount, 'account_id', a.id);
  RETURN v_result || jsonb_build_object('account', account_state(a.id));
END $$;
