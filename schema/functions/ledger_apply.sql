/*
 * Applies one ledger effect outside a JIT decision (a webhook, an informative message reaching the gateway, tests),
 * exactly once per p.effect_key (the transfer's id). Kinds:
 *   hold, debit          velocity (p.velocity) and funds checked unless p.forced; may decline
 *   settle               the first clearing of the holds of p.hold_tokens posts p.amount and releases the rest;
 *                        without a pending hold it is a posted debit
 *   release              partial or full reversal of the hold of p.original_jit_token
 *   void                 releases the whole hold of p.jit_token (timeout, later decline); reverses an immediate debit
 *   credit, forced_debit posted movements, never refused
 * Lock order: the user's account, then the hold's row, then one program shard (DESIGN §3).
 * Returns {status: applied|duplicate|declined|no_account, reason?, approved_minor, account_id, overdrawn}.
 */
CREATE OR REPLACE FUNCTION ledger_apply(p jsonb) RETURNS jsonb LANGUAGE plpgsql
-- Key lookups only: jit_decide.sql says why a cached plan must not scan a table whole.
SET enable_seqscan = off SET jit = off AS $$
DECLARE
  v_kind text := p->>'kind';
  v_key text := p->>'effect_key';
  v_user text := p->>'user_token';
  v_currency text := p->>'currency_code';
  v_amount bigint := coalesce((p->>'amount_minor')::bigint, 0);
  v_jit text := p->>'jit_token';
  v_txn text := p->>'transaction_token';
  v_forced boolean := coalesce((p->>'forced')::boolean, false);
  v_velocity jsonb := coalesce(p->'velocity', '[]');
  a accounts;
  h holds;
  t transfers;
  v_root text;
  v_roots text[];
  v_program bigint;
  v_approved bigint := v_amount;
  v_available bigint;
  v_reason text;
  v_first boolean;
  v_before bigint;
  v_after bigint;
  v_debit_program bigint;
BEGIN
  a := lock_user_account(v_user, v_currency);
  IF a.id IS NULL THEN
    RETURN jsonb_build_object('status', 'no_account', 'reason', 'INVALID_CARD', 'approved_minor', 0);
  END IF;
  SELECT * INTO t FROM transfers WHERE id = v_key;
  IF FOUND THEN
    RETURN jsonb_build_object('status', 'duplicate', 'approved_minor', CASE WHEN t.kind = 'void' THEN t.released ELSE t.amount END,
      'account_id', a.id, 'overdrawn', false);
  END IF;
  IF v_kind = 'hold' AND v_jit IS NOT NULL AND v_key = v_jit || ':hold' THEN
    -- The hold a JIT decision placed is that decision's row.
    SELECT d.hold_minor INTO v_approved FROM decisions d WHERE d.jit_token = v_jit AND d.hold_minor IS NOT NULL;
    IF FOUND THEN
      RETURN jsonb_build_object('status', 'duplicate', 'approved_minor', v_approved, 'account_id', a.id, 'overdrawn', false);
    END IF;
    v_approved := v_amount;
  END IF;
  v_program := program_account(v_currency, program_shard(v_user));
  v_available := available_minor(a);
  v_before := v_available;

  IF v_kind IN ('hold', 'debit') AND NOT v_forced THEN
    -- PostgreSQL has the final word on state: the context the rules saw may come from a cache.
    SELECT CASE WHEN c.token IS NULL THEN 'INVALID_CARD'
                WHEN c.state <> 'ACTIVE' THEN 'CARD_NOT_ACTIVE'
                WHEN u.status = 'SUSPENDED' THEN 'CARDHOLDER_NOT_ACTIVE'
                WHEN u.status = 'CLOSED' THEN 'CLOSED_ACCOUNT' END
      INTO v_reason
      FROM users u LEFT JOIN cards c ON c.token = p->>'card_token'
     WHERE u.token = v_user;
    IF v_reason IS NULL AND v_amount > 0 AND jsonb_array_length(v_velocity) > 0 THEN
      v_reason := velocity_exceeded(v_velocity, v_currency, v_amount, p->>'original_jit_token' IS NOT NULL);
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
    IF p->>'original_jit_token' IS NOT NULL THEN
      v_root := hold_root(p->>'original_jit_token');
      IF v_root IS NOT NULL THEN h := hold_lock(v_root, a.id); END IF;
    END IF;
    IF v_approved <= 0 THEN
      PERFORM ledger_transfer(v_key, 'pending', 'noop', NULL, NULL, 'debit', 0, 0, NULL, v_user, v_currency, v_jit, v_txn);
    ELSIF h.jit_token IS NOT NULL AND h.status = 'PENDING' AND h.account_id = a.id THEN
      -- An incremental adds to the hold it names.
      UPDATE holds SET amount = amount + v_approved, remaining = remaining + v_approved WHERE jit_token = h.jit_token;
      UPDATE spend SET amount = amount + v_approved WHERE jit_token = h.jit_token;
      PERFORM ledger_transfer(v_key, 'pending', 'hold.increased', a.id, h.program_account_id, 'debit', v_approved, 0, h.jit_token,
        v_user, v_currency, v_jit, v_txn);
    ELSE
      PERFORM ledger_transfer(v_key, 'pending', 'hold.created', a.id, v_program, 'debit', v_approved, 0, v_jit,
        v_user, v_currency, v_jit, v_txn, NULL, false);
      INSERT INTO holds (jit_token, account_id, program_account_id, user_token, card_token, amount, remaining, forced, created_at, expires_at)
      VALUES (v_jit, a.id, v_program, v_user, p->>'card_token', v_approved, v_approved, v_forced, now(),
              now() + make_interval(days => coalesce((p->>'hold_expiration_days')::int, 7)));
      IF jsonb_array_length(v_velocity) > 0 THEN
        INSERT INTO spend (jit_token, user_token, card_token, currency_code, mcc, mid, amount, uses, created_at)
        VALUES (v_jit, v_user, p->>'card_token', v_currency, p->>'mcc', p->>'mid', v_approved, 1, now());
      END IF;
    END IF;

  ELSIF v_kind IN ('debit', 'forced_debit') THEN
    PERFORM ledger_transfer(v_key, 'single', v_kind, a.id, v_program, 'debit', v_approved, 0, NULL, v_user, v_currency, v_jit, v_txn);
    IF v_kind = 'debit' AND v_approved > 0 AND jsonb_array_length(v_velocity) > 0 THEN
      INSERT INTO spend (jit_token, user_token, card_token, currency_code, mcc, mid, amount, uses, created_at)
      VALUES (v_jit, v_user, p->>'card_token', v_currency, p->>'mcc', p->>'mid', v_approved, 1, now()) ON CONFLICT DO NOTHING;
    END IF;

  ELSIF v_kind = 'credit' THEN
    PERFORM ledger_transfer(v_key, 'single', 'credit', a.id, v_program, 'credit', v_amount, 0, NULL, v_user, v_currency, v_jit, v_txn);

  ELSIF v_kind = 'settle' THEN
    v_roots := ARRAY(SELECT DISTINCT r.root FROM (SELECT hold_root(x) AS root FROM jsonb_array_elements_text(coalesce(p->'hold_tokens', '[]')) x) r
                      WHERE r.root IS NOT NULL ORDER BY r.root);
    -- The program shards of the holds it settles, locked in id order like every batch's, before any of them moves.
    -- Each hold is found by its token: holds has no index by account, whose holds would all be read.
    PERFORM 1 FROM accounts WHERE id IN (
        SELECT (SELECT s.program_account_id FROM hold_states s WHERE s.jit_token = r.root AND s.account_id = a.id) FROM unnest(v_roots) r(root))
      ORDER BY id FOR UPDATE;
    v_first := true;
    FOREACH v_root IN ARRAY v_roots LOOP
      h := hold_lock(v_root, a.id);
      CONTINUE WHEN h.jit_token IS NULL OR h.status <> 'PENDING';
      -- The first clearing posts its amount and releases what was held; the other holds it names are released.
      PERFORM ledger_transfer(CASE WHEN v_first THEN v_key ELSE v_key || '/' || h.jit_token END, CASE WHEN v_first THEN 'post' ELSE 'void' END,
        'hold.posted', a.id, h.program_account_id, 'debit', CASE WHEN v_first THEN v_amount ELSE 0 END, h.remaining, h.jit_token,
        v_user, v_currency, v_jit, v_txn);
      UPDATE holds SET posted = CASE WHEN v_first THEN v_amount ELSE 0 END, remaining = 0, status = 'POSTED', resolved_at = now()
       WHERE jit_token = h.jit_token;
      UPDATE spend SET amount = CASE WHEN v_first THEN v_amount ELSE 0 END, uses = 1 WHERE jit_token = h.jit_token;
      v_first := false;
    END LOOP;
    IF v_first THEN
      PERFORM ledger_transfer(v_key, 'single', 'post.unmatched', a.id, v_program, 'debit', v_amount, 0, NULL, v_user, v_currency, v_jit, v_txn);
    END IF;

  ELSIF v_kind = 'release' THEN
    v_root := hold_root(p->>'original_jit_token');
    IF v_root IS NOT NULL THEN h := hold_lock(v_root, a.id); END IF;
    IF h.jit_token IS NOT NULL AND h.status = 'PENDING' THEN
      v_approved := hold_release(h, v_amount, 'VOIDED', v_key, 'hold.voided', v_jit, v_txn);
    ELSE
      v_approved := 0;
      PERFORM ledger_transfer(v_key, 'void', 'noop', NULL, NULL, 'debit', 0, 0, v_root, v_user, v_currency, v_jit, v_txn);
    END IF;

  ELSIF v_kind = 'void' THEN
    -- A hold we approved (or added to, for an incremental) that Marqeta then declined or timed out: released.
    v_root := hold_root(v_jit);
    IF v_root IS NOT NULL THEN h := hold_lock(v_root, a.id); END IF;
    IF h.jit_token IS NOT NULL AND h.status = 'PENDING' THEN
      IF v_root = v_jit THEN
        v_approved := hold_release(h, NULL, 'VOIDED', v_key, 'hold.voided', v_jit, v_txn);
      ELSE
        SELECT coalesce((SELECT d.hold_minor FROM decisions d WHERE d.jit_token = v_jit),
                        (SELECT t2.amount FROM transfers t2 WHERE t2.id = v_jit || ':hold'), 0) INTO v_approved;
        v_approved := hold_release(h, v_approved, 'VOIDED', v_key, 'hold.voided', v_jit, v_txn);
      END IF;
    ELSE
      -- An immediate debit we approved that Marqeta then declined or timed out: the money goes back, through the
      -- program shard the debit credited.
      SELECT t2.amount, t2.credit_account_id INTO v_approved, v_debit_program FROM transfers t2
       WHERE t2.id = v_jit || ':debit' AND t2.debit_account_id = a.id;
      v_approved := coalesce(v_approved, 0);
      PERFORM ledger_transfer(v_key, 'single', CASE WHEN v_approved > 0 THEN 'void.debit' ELSE 'noop' END, a.id,
        coalesce(v_debit_program, v_program), 'credit', v_approved, 0, NULL, v_user, v_currency, v_jit, v_txn);
      UPDATE spend SET amount = 0, uses = 0 WHERE jit_token = v_jit AND v_approved > 0;
    END IF;

  ELSE
    RAISE EXCEPTION 'unknown ledger effect kind %', v_kind;
  END IF;

  SELECT available_minor(a2) INTO v_after FROM accounts a2 WHERE a2.id = a.id;
  v_available := CASE WHEN v_after < 0 AND v_after < v_before THEN v_after ELSE 0 END;
  IF v_available < 0 AND v_kind IN ('hold', 'debit', 'forced_debit', 'settle') THEN
    -- A network-forced posting that drives the account (further) negative (DESIGN §3): recorded, and published as
    -- ledger.overdrawn.
    PERFORM ledger_transfer(v_key || ':overdrawn', 'single', 'overdrawn', NULL, NULL, 'debit', 0, 0, NULL, v_user, v_currency,
      v_jit, v_txn, v_available::text, true);
  END IF;
  RETURN jsonb_build_object('status', 'applied', 'approved_minor', v_approved, 'account_id', a.id,
    'overdrawn', v_available < 0 AND v_kind IN ('hold', 'debit', 'forced_debit', 'settle'));
END $$;
