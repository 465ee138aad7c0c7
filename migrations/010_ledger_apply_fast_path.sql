-- ledger_apply (as in 005) without two statements on the common path of an authorization: the velocity count when
-- no window control applies, and the incremental's hold lookup when there is no original_jit_funding_token.

CREATE OR REPLACE FUNCTION ledger_apply(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
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
    IF v_reason IS NULL AND v_amount > 0 AND jsonb_array_length(coalesce(p->'velocity', '[]')) > 0 THEN
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
      IF p->>'original_jit_token' IS NOT NULL THEN
        SELECT h2.* INTO h FROM hold_tokens t JOIN holds h2 ON h2.id = t.hold_id
         WHERE t.jit_token = p->>'original_jit_token' AND h2.status = 'PENDING' AND h2.account_id = a.id FOR UPDATE OF h2;
      END IF;
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
      SELECT h2.* FROM holds h2
       WHERE h2.id IN (SELECT t.hold_id FROM hold_tokens t
                        WHERE t.jit_token IN (SELECT jsonb_array_elements_text(coalesce(p->'hold_tokens', '[]'))))
         AND h2.status = 'PENDING' AND h2.account_id = a.id
       ORDER BY h2.id FOR UPDATE
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
