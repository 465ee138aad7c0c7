/*
 * Decides a batch of JIT funding requests in one statement, one transaction (DESIGN §3 group commit, §4); a single
 * decision is a batch of one. Each item is what src/jit/decide.ts built: {echo, mode, decline_reason?, memo?,
 * amount_text, exponent, currency_code, card_token, transaction_token, effect?, request, versions?, deadline_ms?}.
 * mode: decide (a hold or an immediate debit: the rules' decline, or the ledger's checks and the movement), effect
 * (an informative message: ledger_apply, decided alone), inquiry (balances), record (no ledger change).
 *
 * Locks, in the one global order of the ledger (context_changed.sql, ledger_apply.sql): program_context (ROW SHARE),
 * the users rows a decision needs share-locked (acting users, users getting their first account) in token order, the
 * cardholder accounts in id order, each once however many of the batch's decisions use it, and last the program
 * shards in id order, each updated once with the batch's sum. Batches therefore never wait on each other in a cycle.
 * A hot account serves the batch's decisions in arrival order from the balance read under its lock.
 *
 * Writes: one decision row per item, with its final answer (for an approved hold, the row is the pending transfer);
 * one HOT update per cardholder account; one update per program shard. An immediate debit adds its transfer, a
 * velocity-controlled approval its usage row, an incremental its hold's row.
 *
 * Returns one row per item (i = its position): the answer, whether it replays an earlier decision, and status 409
 * with an empty response when the context versions the decision used are not current (nothing written for it).
 * An approval whose deadline (deadline_ms, epoch milliseconds, less p_margin_ms) has passed when its turn comes,
 * locks held, is declined instead; if the earliest approval's deadline passes while the batch waits for its last
 * locks (its decision rows, the program shards), the whole call fails with query_canceled and nothing is written:
 * nothing is held past the deadline.
 */
CREATE OR REPLACE FUNCTION jit_decide(p_items jsonb[], p_shard int DEFAULT NULL, p_lock_timeout_ms int DEFAULT NULL, p_margin_ms int DEFAULT 20)
RETURNS TABLE (i int, status_code int, response text, replay boolean, overdrawn boolean) LANGUAGE plpgsql
-- Its statements take arrays of the batch; a custom plan per call would be planned again every time.
SET plan_cache_mode = force_generic_plan
-- Its statements are key lookups. A plan is cached for the connection's life: one made while a table was nearly empty
-- (a new database, or no ANALYZE since) would otherwise scan that table whole on every call once it has grown. Every
-- entry point into the ledger (and the context trigger) sets the same, so that the helpers they call, whose plans are
-- made on their first call, are planned with it too.
-- A disabled scan adds 1e10 to a plan's cost (PostgreSQL 15-17), far past jit_above_cost: JIT stays off with it.
SET enable_seqscan = off SET jit = off AS $$
DECLARE
  n int := cardinality(p_items);
  p jsonb;
  e jsonb;
  k int;
  v_token text;
  v_moving boolean[] := '{}';
  v_tokens text[] := '{}';
  v_users text[] := '{}';        -- the money-moving decisions' accounts: user and currency
  v_currencies bpchar[] := '{}'; -- accounts.currency_code's type: compared as text, no index serves the joins below
  v_effect_keys text[] := '{}';
  v_version_users text[] := '{}';
  v_share text[] := '{}';
  v_missing text[];
  v_keys text[] := '{}';         -- "user|currency" of each locked account, in id order
  v_ids bigint[] := '{}';
  v_avail bigint[] := '{}';
  v_pend bigint[] := '{}';
  v_post bigint[] := '{}';
  v_shard_ids bigint[] := '{}';  -- program shards touched, with their movements
  v_shard_pend bigint[] := '{}';
  v_shard_post bigint[] := '{}';
  v_batch_shard jsonb := '{}';   -- currency -> the batch's program shard account
  v_prior jsonb;
  v_done jsonb;
  v_current jsonb;
  v_program_version bigint;
  v_rows jsonb[] := '{}';
  o_status int[] := '{}';
  o_response text[] := '{}';
  o_replay boolean[] := '{}';
  o_overdrawn boolean[] := '{}';
  -- per item
  v_mode text;
  v_reason text;
  v_memo text;
  v_exponent int;
  v_amount numeric;
  v_amount_minor bigint;
  v_approved bigint;
  v_result text;
  v_fields jsonb;
  v_body jsonb;
  v_text text;
  v_ix int;
  v_sx int;
  v_hold bigint;
  v_hold_of text;
  v_account bigint;
  v_program bigint;
  v_expires timestamptz;
  v_over boolean;
  v_stale boolean;
  v_root text;
  h holds;
  r jsonb;
  v_inserted int;
  v_first_deadline numeric := 'Infinity';  -- the earliest deadline of the batch's approvals
BEGIN
  IF p_lock_timeout_ms IS NOT NULL THEN
    PERFORM set_config('lock_timeout', p_lock_timeout_ms || 'ms', true);
  END IF;

  -- What the batch needs, gathered once: its tokens, the accounts and effect keys of its money-moving decisions, the
  -- users whose versions it carries, and the other users whose rows it must share-lock (owners of cards used through
  -- acting_user_token: context_changed.sql says why).
  FOR k IN 1..n LOOP
    p := p_items[k];
    e := p->'effect';
    v_moving[k] := p->>'mode' = 'decide' AND p->>'decline_reason' IS NULL AND e->>'kind' IN ('hold', 'debit');
    IF n > 1 AND p->>'mode' = 'effect' THEN RAISE EXCEPTION 'jit_decide: informative messages are decided alone'; END IF;
    v_tokens := v_tokens || (p->'echo'->>'token');
    IF p ? 'versions' THEN
      v_version_users := v_version_users || ARRAY(SELECT jsonb_object_keys(p->'versions'));
    END IF;
    IF v_moving[k] THEN
      v_users := v_users || (e->>'user_token');
      v_currencies := v_currencies || (e->>'currency_code')::bpchar;
      v_effect_keys := v_effect_keys || (e->>'effect_key');
      IF p ? 'versions' THEN
        v_share := v_share || ARRAY(SELECT vk FROM jsonb_object_keys(p->'versions') vk WHERE vk NOT IN ('', e->>'user_token'));
      END IF;
    END IF;
  END LOOP;
  IF n > 1 AND n <> (SELECT count(DISTINCT t) FROM unnest(v_tokens) t) THEN
    RAISE EXCEPTION 'jit_decide: a JIT token twice in one batch';
  END IF;

  LOCK TABLE program_context IN ROW SHARE MODE;
  -- Users before accounts: the acting users' owners, and users about to get their first account in this currency.
  SELECT array_agg(DISTINCT x.u) INTO v_missing FROM unnest(v_users, v_currencies) x(u, c)
   WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.user_token = x.u AND a.currency_code = x.c);
  IF cardinality(v_share) > 0 OR v_missing IS NOT NULL THEN
    PERFORM 1 FROM users u WHERE u.token = ANY (v_share || coalesce(v_missing, '{}')) ORDER BY u.token FOR SHARE;
    IF v_missing IS NOT NULL THEN
      INSERT INTO accounts (user_token, currency_code)
      SELECT DISTINCT x.u, x.c FROM unnest(v_users, v_currencies) x(u, c)
       WHERE x.u = ANY (v_missing) AND EXISTS (SELECT 1 FROM users u WHERE u.token = x.u)
      ON CONFLICT DO NOTHING;
    END IF;
  END IF;

  SELECT coalesce(array_agg(s.key ORDER BY s.id), '{}'), coalesce(array_agg(s.id ORDER BY s.id), '{}'),
         coalesce(array_agg(s.available ORDER BY s.id), '{}')
    INTO v_keys, v_ids, v_avail
    FROM (SELECT a.id, a.user_token || '|' || a.currency_code AS key, available_minor(a) AS available
            FROM accounts a
           WHERE a.id = ANY (ARRAY(SELECT a2.id FROM unnest(v_users, v_currencies) x(u, c)
                                     JOIN accounts a2 ON a2.user_token = x.u AND a2.currency_code = x.c))
           ORDER BY a.id FOR UPDATE) s;
  v_pend := array_fill(0::bigint, ARRAY[cardinality(v_ids)]);
  v_post := array_fill(0::bigint, ARRAY[cardinality(v_ids)]);

  -- Read after the locks, in a fresh snapshot: earlier decisions of these tokens, effects already applied by a
  -- webhook, and the current context versions.
  SELECT (SELECT jsonb_object_agg(d.jit_token, jsonb_build_array(d.status_code, d.response)) FROM decisions d WHERE d.jit_token = ANY (v_tokens)),
         (SELECT jsonb_object_agg(t.id, t.amount) FROM transfers t WHERE t.id = ANY (v_effect_keys)),
         (SELECT jsonb_object_agg(u.token, u.context_version) FROM users u WHERE u.token = ANY (v_version_users)),
         (SELECT pc.version FROM program_context pc)
    INTO v_prior, v_done, v_current, v_program_version;

  FOR k IN 1..n LOOP
    p := p_items[k];
    e := p->'effect';
    v_token := p->'echo'->>'token';
    IF v_prior ? v_token THEN
      o_status[k] := (v_prior->v_token->>0)::int;
      o_response[k] := v_prior->v_token->>1;
      o_replay[k] := true;
      o_overdrawn[k] := false;
      CONTINUE;
    END IF;
    IF p ? 'versions' THEN
      SELECT NOT coalesce(bool_and(x.value::bigint = CASE WHEN x.key = '' THEN v_program_version
                                                          ELSE coalesce((v_current->>x.key)::bigint, 0) END), true)
        INTO v_stale FROM jsonb_each_text(p->'versions') x;
      IF v_stale THEN
        o_status[k] := 409;
        o_response[k] := '';
        o_replay[k] := false;
        o_overdrawn[k] := false;
        CONTINUE;
      END IF;
    END IF;

    v_mode := p->>'mode';
    v_reason := p->>'decline_reason';
    v_memo := p->>'memo';
    v_exponent := coalesce((p->>'exponent')::int, 2);
    v_amount := coalesce((p->>'amount_text')::numeric, 0);
    v_result := 'approved';
    v_fields := jsonb_build_object('amount', v_amount);
    v_approved := NULL;
    v_hold := NULL;
    v_hold_of := NULL;
    v_account := NULL;
    v_program := NULL;
    v_expires := NULL;
    v_over := false;

    IF v_moving[k] THEN
      v_amount_minor := (e->>'amount_minor')::bigint;
      v_ix := array_position(v_keys, (e->>'user_token') || '|' || (e->>'currency_code'));
      IF p ? 'deadline_ms' AND (p->>'deadline_ms')::numeric - p_margin_ms < extract(epoch FROM clock_timestamp()) * 1000 THEN
        v_reason := 'TRANSACTION_NOT_PERMITTED';
        v_memo := 'gateway deadline exceeded; nothing was held';
      ELSIF v_ix IS NULL THEN
        v_reason := 'INVALID_CARD';
      ELSIF v_done ? (e->>'effect_key') THEN
        -- A webhook applied this effect first (or a later message superseded it): answered, not moved again.
        v_approved := (v_done->>(e->>'effect_key'))::bigint;
        v_memo := 'already applied by an earlier message';
      ELSE
        v_account := v_ids[v_ix];
        IF v_amount_minor > 0 AND jsonb_array_length(coalesce(e->'velocity', '[]')) > 0 THEN
          v_reason := velocity_exceeded(e->'velocity', e->>'currency_code', v_amount_minor, e->>'original_jit_token' IS NOT NULL);
        END IF;
        v_approved := v_amount_minor;
        IF v_reason IS NULL AND v_avail[v_ix] < v_amount_minor THEN
          IF coalesce((e->>'partial_ok')::boolean, false) AND v_avail[v_ix] > 0 THEN
            v_approved := v_avail[v_ix];
          ELSE
            v_reason := 'INSUFFICIENT_FUNDS';
          END IF;
        END IF;
        IF v_reason IS NULL AND v_approved > 0 THEN
          IF NOT v_batch_shard ? (e->>'currency_code') THEN
            v_batch_shard := v_batch_shard || jsonb_build_object(e->>'currency_code',
              program_account(e->>'currency_code', coalesce(p_shard, program_shard(e->>'user_token'))));
          END IF;
          v_program := (v_batch_shard->>(e->>'currency_code'))::bigint;
          IF e->>'kind' = 'hold' THEN
            h := NULL;
            IF e->>'original_jit_token' IS NOT NULL THEN
              v_root := hold_root(e->>'original_jit_token');
              IF v_root IS NOT NULL THEN h := hold_lock(v_root, v_account); END IF;
            END IF;
            IF h.jit_token IS NOT NULL AND h.status = 'PENDING' AND h.account_id = v_account THEN
              -- An incremental adds to its hold, on the hold's program shard.
              UPDATE holds SET amount = amount + v_approved, remaining = remaining + v_approved WHERE jit_token = h.jit_token;
              UPDATE spend SET amount = amount + v_approved WHERE jit_token = h.jit_token;
              v_hold_of := h.jit_token;
              v_program := h.program_account_id;
            ELSE
              v_expires := now() + make_interval(days => coalesce((e->>'hold_expiration_days')::int, 7));
            END IF;
            v_hold := v_approved;
            v_pend[v_ix] := v_pend[v_ix] + v_approved;
          ELSE
            INSERT INTO transfers (id, kind, code, debit_account_id, credit_account_id, amount, user_token, currency_code, jit_token, transaction_token)
            VALUES (e->>'effect_key', 'single', 'debit', v_account, v_program, v_approved, e->>'user_token', e->>'currency_code', v_token, e->>'transaction_token');
            v_post[v_ix] := v_post[v_ix] + v_approved;
          END IF;
          v_avail[v_ix] := v_avail[v_ix] - v_approved;
          v_first_deadline := least(v_first_deadline, coalesce((p->>'deadline_ms')::numeric, v_first_deadline));
          v_sx := array_position(v_shard_ids, v_program);
          IF v_sx IS NULL THEN
            v_shard_ids := v_shard_ids || v_program;
            v_shard_pend := v_shard_pend || 0::bigint;
            v_shard_post := v_shard_post || 0::bigint;
            v_sx := cardinality(v_shard_ids);
          END IF;
          IF e->>'kind' = 'hold' THEN
            v_shard_pend[v_sx] := v_shard_pend[v_sx] + v_approved;
          ELSE
            v_shard_post[v_sx] := v_shard_post[v_sx] + v_approved;
          END IF;
          IF jsonb_array_length(coalesce(e->'velocity', '[]')) > 0 AND v_hold_of IS NULL THEN
            INSERT INTO spend (jit_token, user_token, card_token, currency_code, mcc, mid, amount, uses, created_at)
            VALUES (v_token, e->>'user_token', e->>'card_token', e->>'currency_code', e->>'mcc', e->>'mid', v_approved, 1, now())
            ON CONFLICT DO NOTHING;
          END IF;
        END IF;
      END IF;
      IF v_reason IS NOT NULL AND v_memo IS NULL THEN
        v_memo := 'declined by the ledger: ' || lower(replace(v_reason, '_', ' '));
      END IF;
      IF v_reason IS NULL THEN
        v_fields := jsonb_build_object('amount', minor_to_numeric(v_approved, v_exponent));
      ELSE
        v_approved := NULL;
        v_hold := NULL;
        v_program := NULL;
      END IF;
    ELSIF v_mode = 'effect' THEN
      r := ledger_apply(e);
      v_result := 'recorded';
      v_over := coalesce(r->>'status' = 'applied' AND (r->>'overdrawn')::boolean, false);
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
    v_text := (jsonb_build_object('jit_funding', (p->'echo') || v_fields))::text;
    v_rows := v_rows || jsonb_build_object('jit_token', v_token, 'method', p->'echo'->>'method', 'user_token', p->'echo'->>'user_token',
      'card_token', p->>'card_token', 'transaction_token', p->>'transaction_token', 'currency_code', left(p->>'currency_code', 3),
      'result', v_result, 'decline_reason', v_reason, 'status_code', CASE WHEN v_reason IS NULL THEN 200 ELSE 402 END,
      'amount_minor', v_approved, 'hold_minor', v_hold, 'hold_of', v_hold_of, 'account_id', CASE WHEN v_hold IS NOT NULL THEN v_account END,
      'program_account_id', CASE WHEN v_hold IS NOT NULL THEN v_program END, 'expires_at', v_expires, 'overdrawn', v_over,
      'request', p->'request', 'response', v_text);
    o_status[k] := CASE WHEN v_reason IS NULL THEN 200 ELSE 402 END;
    o_response[k] := v_text;
    o_replay[k] := false;
    o_overdrawn[k] := v_over;
  END LOOP;

  INSERT INTO decisions (jit_token, method, user_token, card_token, transaction_token, currency_code, result, decline_reason,
                         status_code, amount_minor, hold_minor, hold_of, account_id, program_account_id, expires_at, overdrawn, request, response)
  SELECT d.jit_token, d.method, d.user_token, d.card_token, d.transaction_token, d.currency_code, d.result, d.decline_reason,
         d.status_code, d.amount_minor, d.hold_minor, d.hold_of, d.account_id, d.program_account_id, d.expires_at, d.overdrawn, d.request, d.response
    FROM jsonb_populate_recordset(NULL::decisions, to_jsonb(v_rows)) d
  ON CONFLICT (jit_token) DO NOTHING;
  GET DIAGNOSTICS v_inserted = ROW_COUNT;
  IF v_inserted <> cardinality(v_rows) THEN
    -- Another transaction decided one of these tokens meanwhile without this batch's locks (a decline, or a token
    -- reused for another cardholder): nothing of this batch stands; the caller decides again and replays it.
    RAISE EXCEPTION USING ERRCODE = 'unique_violation', MESSAGE = 'jit_decide: a token was decided concurrently';
  END IF;
  -- The program shards last, in id order; the wait for them (or for the insert above) may outlast an approval's
  -- deadline, and then nothing of the batch stands: the caller answers as past the deadline.
  PERFORM 1 FROM accounts WHERE id = ANY (v_shard_ids) ORDER BY id FOR UPDATE;
  IF v_first_deadline - p_margin_ms < extract(epoch FROM clock_timestamp()) * 1000 THEN
    RAISE EXCEPTION USING ERRCODE = 'query_canceled', MESSAGE = 'jit_decide: an approval''s deadline passed while its batch waited for a lock';
  END IF;
  UPDATE accounts a SET debits_pending = a.debits_pending + x.pend, debits_posted = a.debits_posted + x.post
    FROM unnest(v_ids, v_pend, v_post) AS x(id, pend, post)
   WHERE a.id = x.id AND (x.pend <> 0 OR x.post <> 0);
  FOR v_sx IN SELECT s.ord FROM unnest(v_shard_ids) WITH ORDINALITY s(id, ord) ORDER BY s.id LOOP
    UPDATE accounts SET credits_pending = credits_pending + v_shard_pend[v_sx], credits_posted = credits_posted + v_shard_post[v_sx]
     WHERE id = v_shard_ids[v_sx];
  END LOOP;

  RETURN QUERY SELECT x.ord::int, x.s, x.r, x.rp, x.o FROM unnest(o_status, o_response, o_replay, o_overdrawn) WITH ORDINALITY AS x(s, r, rp, o, ord);
END $$;
