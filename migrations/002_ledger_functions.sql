-- Ledger operations (DESIGN §3, §4, §5). Each runs inside the caller's single statement, so a JIT decision is one
-- round trip. Lock order everywhere: the user's account row, then its holds, then one program shard row; no
-- operation touches two user accounts, so concurrent operations cannot deadlock.

CREATE FUNCTION minor_to_numeric(p_minor bigint, p_exponent int) RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$ SELECT trim_scale(p_minor::numeric / (10::numeric ^ p_exponent)) $$;

CREATE FUNCTION program_account(p_currency text, p_user text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_shard int := abs(hashtext(coalesce(p_user, ''))) % 64;
  v_id bigint;
BEGIN
  SELECT id INTO v_id FROM accounts WHERE user_token IS NULL AND currency_code = p_currency AND shard = v_shard;
  IF v_id IS NULL THEN
    INSERT INTO accounts (user_token, shard, currency_code) VALUES (NULL, v_shard, p_currency) ON CONFLICT DO NOTHING RETURNING id INTO v_id;
    IF v_id IS NULL THEN
      SELECT id INTO v_id FROM accounts WHERE user_token IS NULL AND currency_code = p_currency AND shard = v_shard;
    END IF;
  END IF;
  RETURN v_id;
END $$;

-- The user's account in a currency, created on first use, locked FOR UPDATE. NULL when the user does not exist.
CREATE FUNCTION lock_user_account(p_user text, p_currency text) RETURNS accounts LANGUAGE plpgsql AS $$
DECLARE v accounts;
BEGIN
  SELECT * INTO v FROM accounts WHERE user_token = p_user AND currency_code = p_currency FOR UPDATE;
  IF NOT FOUND THEN
    IF NOT EXISTS (SELECT 1 FROM users WHERE token = p_user) THEN RETURN NULL; END IF;
    INSERT INTO accounts (user_token, currency_code) VALUES (p_user, p_currency) ON CONFLICT DO NOTHING;
    SELECT * INTO v FROM accounts WHERE user_token = p_user AND currency_code = p_currency FOR UPDATE;
  END IF;
  RETURN v;
END $$;

CREATE FUNCTION available_minor(a accounts) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
  SELECT a.credits_posted - a.debits_posted - a.debits_pending $$;

CREATE FUNCTION account_balances(p_account bigint, p_exponent int) RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'currency_code', a.currency_code,
    'available_balance', minor_to_numeric(a.credits_posted - a.debits_posted - a.debits_pending, p_exponent),
    'ledger_balance', minor_to_numeric(a.credits_posted - a.debits_posted, p_exponent),
    'pending_holds', minor_to_numeric(a.debits_pending, p_exponent))
  FROM accounts a WHERE a.id = p_account $$;

-- One journal entry and the matching balance columns. p_direction: 'debit' takes from the user, 'credit' gives.
CREATE FUNCTION ledger_move(p_user_account bigint, p_program_account bigint, p_amount bigint, p_direction text,
  p_phase text, p_kind text, p_hold bigint, p_jit text, p_txn text, p_effect text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_sign int := CASE p_phase WHEN 'release' THEN -1 ELSE 1 END;
  v_debit bigint := CASE p_direction WHEN 'debit' THEN p_user_account ELSE p_program_account END;
  v_credit bigint := CASE p_direction WHEN 'debit' THEN p_program_account ELSE p_user_account END;
BEGIN
  IF p_amount <= 0 THEN RETURN; END IF;
  -- The user's row is always updated first (it is already locked by the caller), then the program shard.
  IF p_phase = 'posted' THEN
    IF p_direction = 'debit' THEN
      UPDATE accounts SET debits_posted = debits_posted + p_amount WHERE id = v_debit;
      UPDATE accounts SET credits_posted = credits_posted + p_amount WHERE id = v_credit;
    ELSE
      UPDATE accounts SET credits_posted = credits_posted + p_amount WHERE id = v_credit;
      UPDATE accounts SET debits_posted = debits_posted + p_amount WHERE id = v_debit;
    END IF;
  ELSE
    IF p_direction <> 'debit' THEN RAISE EXCEPTION 'pending movements only debit users'; END IF;
    UPDATE accounts SET debits_pending = debits_pending + v_sign * p_amount WHERE id = v_debit;
    UPDATE accounts SET credits_pending = credits_pending + v_sign * p_amount WHERE id = v_credit;
  END IF;
  INSERT INTO entries (debit_account_id, credit_account_id, amount, phase, kind, hold_id, jit_token, transaction_token, effect_key)
  VALUES (v_debit, v_credit, p_amount, p_phase, p_kind, p_hold, p_jit, p_txn, p_effect);
END $$;

CREATE FUNCTION emit(p_routing_key text, p_payload jsonb) RETURNS void LANGUAGE sql AS $$
  INSERT INTO outbox (routing_key, payload) VALUES (p_routing_key, p_payload);
  SELECT pg_notify('outbox', '');
$$;

-- Releases part (or, with p_amount NULL, all) of a pending hold; a hold with nothing left becomes p_final_status.
-- Gives the released amount (and, when nothing was ever posted, the use) back to velocity.
CREATE FUNCTION hold_release(h holds, p_amount bigint, p_final_status text, p_kind text, p_jit text, p_txn text, p_effect text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_release bigint := least(coalesce(p_amount, h.remaining), h.remaining);
BEGIN
  IF v_release > 0 THEN
    PERFORM ledger_move(h.account_id, h.program_account_id, v_release, 'debit', 'release', p_kind, h.id, p_jit, p_txn, p_effect);
  END IF;
  UPDATE holds SET remaining = remaining - v_release,
    status = CASE WHEN remaining - v_release = 0 THEN p_final_status ELSE status END,
    resolved_at = CASE WHEN remaining - v_release = 0 THEN now() ELSE resolved_at END
  WHERE id = h.id;
  UPDATE spend SET amount = greatest(0, amount - v_release),
    uses = CASE WHEN h.remaining - v_release = 0 AND h.posted = 0 THEN 0 ELSE uses END
  WHERE jit_token = h.jit_token;
  RETURN v_release;
END $$;

/*
 * Applies one ledger effect, exactly once per p.effect_key. Kinds:
 *   hold, debit          actionable: velocity (p.velocity) and funds checked unless p.forced; may decline
 *   settle               first clearing of the holds of p.hold_tokens posts p.amount and releases the rest;
 *                        without a pending hold it is a posted debit
 *   release              partial or full reversal of the hold of p.original_jit_token
 *   void                 releases the whole hold of p.jit_token (timeout, later decline); reverses an immediate debit
 *   credit, forced_debit posted movements, never refused
 * Returns {status: applied|duplicate|declined|no_account, reason?, approved_minor, account_id, overdrawn}.
 */
CREATE FUNCTION ledger_apply(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_kind text := p->>'kind';
  v_key text := p->>'effect_key';
  v_user text := p->>'user_token';
  v_currency text := p->>'currency_code';
  v_amount bigint := coalesce((p->>'amount_minor')::bigint, 0);
  v_jit text := p->>'jit_token';
  v_txn text := p->>'transaction_token';
  v_forced boolean := coalesce((p->>'forced')::boolean, false);
  v_now timestamptz := now();
  a accounts;
  h holds;
  v_program bigint;
  v_approved bigint := v_amount;
  v_available bigint;
  v_reason text;
  v_total bigint;
  v_first boolean;
  v_previous jsonb;
  v_result jsonb;
  c record;
BEGIN
  a := lock_user_account(v_user, v_currency);
  IF a.id IS NULL THEN
    RETURN jsonb_build_object('status', 'no_account', 'reason', 'INVALID_CARD', 'approved_minor', 0);
  END IF;
  SELECT result INTO v_previous FROM effects WHERE effect_key = v_key;
  IF FOUND THEN
    RETURN v_previous || jsonb_build_object('status', 'duplicate');
  END IF;
  v_program := program_account(v_currency, v_user);
  v_available := available_minor(a);

  IF v_kind IN ('hold', 'debit') AND NOT v_forced THEN
    -- PostgreSQL has the final word on state: the context the rules saw may come from a cache.
    SELECT CASE WHEN c2.token IS NULL THEN 'INVALID_CARD'
                WHEN c2.state <> 'ACTIVE' THEN 'CARD_NOT_ACTIVE'
                WHEN u.status = 'SUSPENDED' THEN 'CARDHOLDER_NOT_ACTIVE'
                WHEN u.status = 'CLOSED' THEN 'CLOSED_ACCOUNT' END
      INTO v_reason
      FROM users u LEFT JOIN cards c2 ON c2.token = p->>'card_token'
     WHERE u.token = v_user;
    IF v_reason IS NULL AND v_amount > 0 THEN
      -- Amount windows first, then usage windows (DESIGN §4).
      FOR c IN
        SELECT x.amount_limit, x.usage_limit, coalesce(s.amount, 0) AS used_amount, coalesce(s.uses, 0) AS used_count
          FROM jsonb_to_recordset(coalesce(p->'velocity', '[]')) AS x(amount_limit bigint, usage_limit int, since timestamptz,
                 user_token text, card_token text, mcc text, mid text)
          CROSS JOIN LATERAL (
            SELECT sum(sp.amount) AS amount, sum(sp.uses) AS uses FROM spend sp
             WHERE sp.currency_code = v_currency AND sp.created_at >= x.since
               AND (x.user_token IS NULL OR sp.user_token = x.user_token)
               AND (x.card_token IS NULL OR sp.card_token = x.card_token)
               AND (x.mcc IS NULL OR sp.mcc = x.mcc) AND (x.mid IS NULL OR sp.mid = x.mid)) s
      LOOP
        IF c.amount_limit IS NOT NULL AND c.used_amount + v_amount > c.amount_limit THEN
          v_reason := 'AMOUNT_LIMIT_EXCEEDED'; EXIT;
        END IF;
        IF c.usage_limit IS NOT NULL AND p->>'original_jit_token' IS NULL AND c.used_count + 1 > c.usage_limit THEN
          v_reason := coalesce(v_reason, 'TRANSACTION_COUNT_LIMIT_EXCEEDED');
        END IF;
      END LOOP;
    END IF;
    IF v_reason IS NULL AND v_available < v_amount THEN
      IF coalesce((p->>'partial_ok')::boolean, false) AND v_available > 0 THEN
        v_approved := v_available;
      ELSE
        v_reason := 'INSUFFICIENT_FUNDS';
      END IF;
    END IF;
    IF v_reason IS NOT NULL THEN
      RETURN jsonb_build_object('status', 'declined', 'reason', v_reason, 'approved_minor', 0, 'account_id', a.id);
    END IF;
  END IF;

  IF v_kind = 'hold' THEN
    IF v_approved > 0 THEN
      SELECT h2.* INTO h FROM hold_tokens t JOIN holds h2 ON h2.id = t.hold_id
       WHERE t.jit_token = p->>'original_jit_token' AND h2.status = 'PENDING' FOR UPDATE OF h2;
      IF h.id IS NOT NULL THEN
        UPDATE holds SET amount = amount + v_approved, remaining = remaining + v_approved WHERE id = h.id;
        UPDATE spend SET amount = amount + v_approved WHERE jit_token = h.jit_token;
        PERFORM emit('ledger.hold.increased', jsonb_build_object('hold_jit_token', h.jit_token, 'jit_token', v_jit, 'amount_minor', v_approved));
      ELSE
        INSERT INTO holds (jit_token, account_id, program_account_id, user_token, card_token, amount, remaining, forced, expires_at)
        VALUES (v_jit, a.id, v_program, v_user, p->>'card_token', v_approved, v_approved, v_forced,
                v_now + make_interval(days => coalesce((p->>'hold_expiration_days')::int, 7)))
        RETURNING * INTO h;
        INSERT INTO spend (jit_token, user_token, card_token, currency_code, mcc, mid, amount, uses, created_at)
        VALUES (v_jit, v_user, p->>'card_token', v_currency, p->>'mcc', p->>'mid', v_approved, 1, v_now);
        PERFORM emit('ledger.hold.created', jsonb_build_object('jit_token', v_jit, 'user_token', v_user, 'amount_minor', v_approved, 'currency_code', v_currency, 'forced', v_forced));
      END IF;
      INSERT INTO hold_tokens (jit_token, hold_id) VALUES (v_jit, h.id) ON CONFLICT DO NOTHING;
      PERFORM ledger_move(a.id, v_program, v_approved, 'debit', 'pending', 'hold', h.id, v_jit, v_txn, v_key);
    END IF;

  ELSIF v_kind IN ('debit', 'forced_debit') THEN
    PERFORM ledger_move(a.id, v_program, v_approved, 'debit', 'posted', v_kind, NULL, v_jit, v_txn, v_key);
    IF v_kind = 'debit' AND v_approved > 0 THEN
      INSERT INTO spend (jit_token, user_token, card_token, currency_code, mcc, mid, amount, uses, created_at)
      VALUES (v_jit, v_user, p->>'card_token', v_currency, p->>'mcc', p->>'mid', v_approved, 1, v_now) ON CONFLICT DO NOTHING;
    END IF;

  ELSIF v_kind = 'credit' THEN
    PERFORM ledger_move(a.id, v_program, v_amount, 'credit', 'posted', 'credit', NULL, v_jit, v_txn, v_key);

  ELSIF v_kind = 'settle' THEN
    v_total := 0;
    v_first := true;
    FOR h IN
      SELECT DISTINCT h2.* FROM hold_tokens t JOIN holds h2 ON h2.id = t.hold_id
       WHERE t.jit_token IN (SELECT jsonb_array_elements_text(coalesce(p->'hold_tokens', '[]'))) AND h2.status = 'PENDING'
         AND h2.account_id = a.id
       ORDER BY h2.id FOR UPDATE OF h2
    LOOP
      PERFORM hold_release(h, NULL, 'POSTED', 'settle.release', v_jit, v_txn, v_key);
      UPDATE holds SET posted = CASE WHEN v_first THEN v_amount ELSE 0 END WHERE id = h.id;
      UPDATE spend SET amount = CASE WHEN v_first THEN v_amount ELSE 0 END, uses = 1 WHERE jit_token = h.jit_token;
      PERFORM emit('ledger.hold.posted', jsonb_build_object('hold_jit_token', h.jit_token, 'jit_token', v_jit, 'held_minor', h.remaining, 'posted_minor', CASE WHEN v_first THEN v_amount ELSE 0 END));
      v_total := v_total + h.remaining;
      v_first := false;
    END LOOP;
    PERFORM ledger_move(a.id, v_program, v_amount, 'debit', 'posted', CASE WHEN v_first THEN 'post.unmatched' ELSE 'post' END, NULL, v_jit, v_txn, v_key);

  ELSIF v_kind = 'release' THEN
    SELECT h2.* INTO h FROM hold_tokens t JOIN holds h2 ON h2.id = t.hold_id
     WHERE t.jit_token = p->>'original_jit_token' AND h2.status = 'PENDING' AND h2.account_id = a.id FOR UPDATE OF h2;
    IF h.id IS NOT NULL THEN
      v_approved := hold_release(h, v_amount, 'VOIDED', 'release', v_jit, v_txn, v_key);
      PERFORM emit(CASE WHEN v_approved = h.remaining THEN 'ledger.hold.voided' ELSE 'ledger.hold.released' END,
        jsonb_build_object('hold_jit_token', h.jit_token, 'jit_token', v_jit, 'released_minor', v_approved));
    ELSE
      v_approved := 0;
    END IF;

  ELSIF v_kind = 'void' THEN
    SELECT h2.* INTO h FROM holds h2 WHERE h2.jit_token = v_jit AND h2.status = 'PENDING' AND h2.account_id = a.id FOR UPDATE;
    IF h.id IS NOT NULL THEN
      v_approved := hold_release(h, NULL, 'VOIDED', 'void', v_jit, v_txn, v_key);
      PERFORM emit('ledger.hold.voided', jsonb_build_object('hold_jit_token', h.jit_token, 'jit_token', v_jit, 'released_minor', v_approved, 'reason', p->>'reason'));
    ELSE
      -- An immediate debit we approved that Marqeta then declined or timed out: give the money back.
      SELECT (result->>'approved_minor')::bigint INTO v_approved FROM effects WHERE effect_key = v_jit || ':debit' AND result->>'status' = 'applied';
      v_approved := coalesce(v_approved, 0);
      PERFORM ledger_move(a.id, v_program, v_approved, 'credit', 'posted', 'void.debit', NULL, v_jit, v_txn, v_key);
      UPDATE spend SET amount = 0, uses = 0 WHERE jit_token = v_jit AND v_approved > 0;
    END IF;

  ELSE
    RAISE EXCEPTION 'unknown ledger effect kind %', v_kind;
  END IF;

  SELECT available_minor(a2) INTO v_available FROM accounts a2 WHERE a2.id = a.id;
  v_result := jsonb_build_object('status', 'applied', 'approved_minor', v_approved, 'account_id', a.id, 'overdrawn', v_available < 0);
  IF v_available < 0 AND v_kind IN ('hold', 'debit', 'forced_debit', 'settle') THEN
    PERFORM emit('ledger.overdrawn', jsonb_build_object('user_token', v_user, 'currency_code', v_currency, 'available_minor', v_available, 'jit_token', v_jit, 'effect_key', v_key));
  END IF;
  INSERT INTO effects (effect_key, result) VALUES (v_key, v_result);
  RETURN v_result;
END $$;

-- Expires one hold if it is still pending and past its expiry. Returns the amount released.
CREATE FUNCTION hold_expire(p_hold bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  h holds;
  v_released bigint;
BEGIN
  SELECT * INTO h FROM holds WHERE id = p_hold;
  PERFORM 1 FROM accounts WHERE id = h.account_id FOR UPDATE;
  SELECT * INTO h FROM holds WHERE id = p_hold AND status = 'PENDING' AND expires_at <= now() FOR UPDATE;
  IF NOT FOUND THEN RETURN 0; END IF;
  v_released := hold_release(h, NULL, 'EXPIRED', 'expire', h.jit_token, NULL, h.jit_token || ':expire');
  PERFORM emit('ledger.hold.expired', jsonb_build_object('hold_jit_token', h.jit_token, 'user_token', h.user_token, 'released_minor', v_released));
  RETURN v_released;
END $$;
