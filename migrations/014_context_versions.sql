-- Context versions (DESIGN §8): every change to what a JIT decision reads bumps a version in the same transaction as
-- the change, and a decision carries the versions of the context it used, so that jit_decide refuses a stale one.
--
-- * Cardholder version: users.context_version, bumped by a change of the user's status, of one of its cards (new card,
--   state) or of a control associated with the user or one of its cards. The bump also locks the user's account rows
--   (FOR UPDATE, in id order), the rows a money-moving decision locks anyway.
-- * Program version: program_context.version, bumped by a change of a program-wide control under an EXCLUSIVE lock of
--   program_context; every versioned decision holds ROW SHARE on it (a fast-path relation lock, no row written).
--
-- Why a decision that commits after the change was answered has seen the new version: the change commits before it
-- is answered and holds its locks until then. A money-moving decision first locks, for each user scope it used, a row
-- that the change of that scope locks too: the cardholder's account row for jit_funding.user_token, the users row
-- (FOR SHARE, which the bump's UPDATE conflicts with) for another user (the owner of a card used through
-- acting_user_token); only then, in a later statement (a fresh READ COMMITTED snapshot), it reads the versions. Per
-- scope: if the decision took the lock first, the change waits for it: the decision commits before the change, hence
-- before the answer. Otherwise it waits for the change to commit and its snapshot sees the bump. An account created
-- meanwhile cannot slip between the two: lock_user_account takes FOR SHARE on the users row before creating one,
-- which waits for the bump's row lock. Changes and decisions lock in one order (program_context, users rows by token,
-- accounts), so they never wait on each other in a cycle.
-- The program version works the same with the relation lock, taken first in the decision's transaction so that a
-- waiting change never sits between a batch's account locks. A decline moves no money and takes no lock: it reads the
-- versions in a snapshot taken after its request arrived, so a request made after the answer sees the change.
CREATE SEQUENCE context_version_seq START 2;
-- Existing users start at 1; a user that does not exist has version 0, so a context that saw none goes stale with it.
ALTER TABLE users ADD COLUMN context_version bigint NOT NULL DEFAULT 1;
ALTER TABLE users ALTER COLUMN context_version SET DEFAULT nextval('context_version_seq');

-- One row: the version of the program-wide controls.
CREATE TABLE program_context (
  id boolean PRIMARY KEY DEFAULT true CHECK (id),
  version bigint NOT NULL
);
INSERT INTO program_context (version) VALUES (1);

-- The bump, as a trigger so that no writer of a state, card or control (admin API, webhooks, scripts) can forget it.
CREATE FUNCTION context_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_row record;
  v_scope text;
  v_scopes text[] := '{}';
BEGIN
  IF TG_TABLE_NAME = 'users' THEN
    -- BEFORE UPDATE OF status: the row is locked by this update already; then the accounts.
    PERFORM 1 FROM accounts WHERE user_token = NEW.token ORDER BY id FOR UPDATE;
    NEW.context_version := nextval('context_version_seq');
    RETURN NEW;
  END IF;
  -- An update can move a row between scopes (a control from a user to the program): both the old and the new change.
  FOR i IN 1..2 LOOP
    CONTINUE WHEN (i = 1 AND TG_OP = 'INSERT') OR (i = 2 AND TG_OP = 'DELETE');
    IF i = 1 THEN v_row := OLD; ELSE v_row := NEW; END IF;
    IF TG_TABLE_NAME = 'cards' OR v_row.user_token IS NOT NULL THEN
      v_scope := v_row.user_token;
    ELSIF v_row.card_token IS NOT NULL THEN
      SELECT c.user_token INTO v_scope FROM cards c WHERE c.token = v_row.card_token;
    ELSE
      v_scope := '';
    END IF;
    IF v_scope IS NOT NULL AND NOT v_scope = ANY (v_scopes) THEN v_scopes := v_scopes || v_scope; END IF;
  END LOOP;
  -- The program first, then users in token order: the order a decision takes its locks in.
  IF '' = ANY (v_scopes) THEN
    LOCK TABLE program_context IN EXCLUSIVE MODE;
    UPDATE program_context SET version = nextval('context_version_seq');
  END IF;
  FOR v_scope IN SELECT s FROM unnest(v_scopes) s WHERE s <> '' ORDER BY s LOOP
    UPDATE users SET context_version = nextval('context_version_seq') WHERE token = v_scope;
    PERFORM 1 FROM accounts WHERE user_token = v_scope ORDER BY id FOR UPDATE;
  END LOOP;
  RETURN NULL;
END $$;

CREATE TRIGGER context_version BEFORE UPDATE OF status ON users
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION context_changed();
-- AFTER triggers fire after the foreign-key checks (RI_ triggers sort first), so the referenced card or user row is
-- share-locked before the user's version row: the same order as a card's own state change.
CREATE TRIGGER context_version AFTER INSERT OR DELETE ON cards FOR EACH ROW EXECUTE FUNCTION context_changed();
CREATE TRIGGER context_version_state AFTER UPDATE OF state ON cards
  FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION context_changed();
CREATE TRIGGER context_version AFTER INSERT OR UPDATE OR DELETE ON auth_controls FOR EACH ROW EXECUTE FUNCTION context_changed();
CREATE TRIGGER context_version AFTER INSERT OR UPDATE OR DELETE ON velocity_controls FOR EACH ROW EXECUTE FUNCTION context_changed();

-- lock_user_account (002) with the users row share-locked before an account is created (see above).
CREATE OR REPLACE FUNCTION lock_user_account(p_user text, p_currency text) RETURNS accounts LANGUAGE plpgsql AS $$
DECLARE v accounts;
BEGIN
  SELECT * INTO v FROM accounts WHERE user_token = p_user AND currency_code = p_currency FOR UPDATE;
  IF NOT FOUND THEN
    PERFORM 1 FROM users WHERE token = p_user FOR SHARE;
    IF NOT FOUND THEN RETURN NULL; END IF;
    INSERT INTO accounts (user_token, currency_code) VALUES (p_user, p_currency) ON CONFLICT DO NOTHING;
    SELECT * INTO v FROM accounts WHERE user_token = p_user AND currency_code = p_currency FOR UPDATE;
  END IF;
  RETURN v;
END $$;

-- jit_decide (012) with the version check: `versions` ({"<user token>": version, "": program version}) is the
-- context the decision used. When it is not current, nothing is written and the answer is status 409 with an empty
-- response: the gateway reloads the context from PostgreSQL and decides again. A replayed token still gets its answer.
-- Calls without `versions` (informative messages, the bench's ledger route) are not checked.
CREATE OR REPLACE FUNCTION jit_decide(p jsonb) RETURNS TABLE (status_code int, response text, replay boolean, overdrawn boolean) LANGUAGE plpgsql AS $$
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
  e jsonb := p->'effect';
  v_account bigint;
  v_available bigint;
  v_locked boolean := false;
  v_current boolean;
  v_program bigint;
  v_done boolean;
  v_fast boolean := false;
  v_event jsonb;
BEGIN
  IF p ? 'lock_timeout_ms' THEN
    -- The gateway's deadline bounds lock waits (e.g. a hot account); past it the whole statement rolls back.
    PERFORM set_config('lock_timeout', (p->>'lock_timeout_ms') || 'ms', true);
  END IF;

  IF p ? 'versions' THEN
    -- Before any account lock (see the top of this file).
    LOCK TABLE program_context IN ROW SHARE MODE;
    IF v_mode = 'decide' AND v_reason IS NULL AND e->>'kind' IN ('hold', 'debit') THEN
      -- A money-moving decision reads the versions under locks that a change of any of its scopes conflicts with:
      -- another user's (the owner of a card used by an acting user) through that user's row, taken before the
      -- account as a change takes them; its own through its account row (ledger_apply takes it again).
      PERFORM 1 FROM users u
       WHERE u.token IN (SELECT k FROM jsonb_object_keys(p->'versions') k WHERE k NOT IN ('', e->>'user_token'))
       ORDER BY u.token FOR SHARE;
      SELECT acc.id, available_minor(acc) INTO v_account, v_available
        FROM accounts acc WHERE acc.user_token = e->>'user_token' AND acc.currency_code = e->>'currency_code' FOR UPDATE;
      v_locked := true;
    END IF;
    SELECT bool_and(x.value::bigint = coalesce(CASE WHEN x.key = '' THEN (SELECT pc.version FROM program_context pc)
                                                    ELSE (SELECT u.context_version FROM users u WHERE u.token = x.key) END, 0))
      INTO v_current FROM jsonb_each_text(p->'versions') x;
    IF NOT coalesce(v_current, true) AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.jit_token = v_token) THEN
      RETURN QUERY SELECT 409, ''::text, false, false;
      RETURN;
    END IF;
  END IF;

  INSERT INTO decisions (jit_token, method, user_token, card_token, transaction_token, result, status_code, response, currency_code)
  VALUES (v_token, v_method, p->'echo'->>'user_token', p->>'card_token', p->>'transaction_token', 'pending', 0, '', p->>'currency_code')
  ON CONFLICT (jit_token) DO NOTHING;
  IF NOT FOUND THEN
    RETURN QUERY SELECT d.status_code, d.response, true, false FROM decisions d WHERE d.jit_token = v_token;
    RETURN;
  END IF;

  -- Fast path: a new hold, not forced, no velocity window, a positive amount.
  IF v_mode = 'decide' AND v_reason IS NULL AND e->>'kind' = 'hold' AND e->>'original_jit_token' IS NULL
     AND coalesce(jsonb_array_length(e->'velocity'), 0) = 0 AND NOT coalesce((e->>'forced')::boolean, false)
     AND (e->>'amount_minor')::bigint > 0 THEN
    -- The same lock, then the same checks on a fresh snapshot, as ledger_apply: the account row first, then (after
    -- any wait for it) whether this effect is already done and the card's and cardholder's state.
    IF NOT v_locked THEN
      SELECT acc.id, available_minor(acc) INTO v_account, v_available
        FROM accounts acc WHERE acc.user_token = e->>'user_token' AND acc.currency_code = e->>'currency_code' FOR UPDATE;
    END IF;
    IF v_account IS NOT NULL THEN
      SELECT EXISTS (SELECT 1 FROM effects f WHERE f.effect_key = e->>'effect_key'),
             CASE WHEN c.token IS NULL THEN 'INVALID_CARD'
                  WHEN c.state <> 'ACTIVE' THEN 'CARD_NOT_ACTIVE'
                  WHEN u.status = 'SUSPENDED' THEN 'CARDHOLDER_NOT_ACTIVE'
                  WHEN u.status = 'CLOSED' THEN 'CLOSED_ACCOUNT' END
        INTO v_done, v_reason
        FROM users u LEFT JOIN cards c ON c.token = e->>'card_token'
       WHERE u.token = e->>'user_token';
      IF v_done THEN v_reason := NULL; END IF;
    END IF;
    IF v_account IS NOT NULL AND NOT v_done THEN
      v_approved_minor := (e->>'amount_minor')::bigint;
      IF v_reason IS NULL AND v_available < v_approved_minor THEN
        IF coalesce((e->>'partial_ok')::boolean, false) AND v_available > 0 THEN
          v_approved_minor := v_available;
        ELSE
          v_reason := 'INSUFFICIENT_FUNDS';
        END IF;
      END IF;
      IF v_reason IS NOT NULL THEN
        v_memo := 'declined by the ledger: ' || lower(replace(v_reason, '_', ' '));
        v_approved_minor := NULL;
      ELSE
        v_fast := true;
      END IF;
    END IF;
  END IF;

  v_fields := jsonb_build_object('amount', v_amount);
  IF v_fast THEN
    -- Approved above; the movements are written with the decision below.
    v_fields := jsonb_build_object('amount', minor_to_numeric(v_approved_minor, v_exponent));
  ELSIF v_mode = 'decide' AND v_reason IS NULL THEN
    r := ledger_apply(e);
    IF r->>'status' IN ('declined', 'no_account') THEN
      v_reason := r->>'reason';
      v_memo := 'declined by the ledger: ' || lower(replace(v_reason, '_', ' '));
    ELSE
      v_approved_minor := (r->>'approved_minor')::bigint;
      v_fields := jsonb_build_object('amount', minor_to_numeric(v_approved_minor, v_exponent));
      IF (r->>'status') = 'duplicate' THEN v_memo := 'already applied by an earlier message'; END IF;
    END IF;
  ELSIF v_mode = 'effect' THEN
    r := ledger_apply(e);
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
  v_event := jsonb_build_object('jit_token', v_token, 'method', v_method, 'result', v_result, 'decline_reason', v_reason,
    'user_token', p->'echo'->>'user_token', 'card_token', p->>'card_token', 'request', p->'request', 'response', v_body,
    'overdrawn', coalesce((r->>'overdrawn')::boolean, false));

  -- The decision's record and its event in one statement; on the fast path with the hold's movements and its event.
  IF v_fast THEN
    v_program := program_account(e->>'currency_code', e->>'user_token');
    -- The user's row is locked already; the only lock taken here is the program shard's, after it (002's order).
    WITH h AS (
           INSERT INTO holds (jit_token, account_id, program_account_id, user_token, card_token, amount, remaining, forced, expires_at)
           VALUES (v_token, v_account, v_program, e->>'user_token', e->>'card_token', v_approved_minor, v_approved_minor, false,
                   now() + make_interval(days => coalesce((e->>'hold_expiration_days')::int, 7)))
           RETURNING id),
         s AS (
           INSERT INTO spend (jit_token, user_token, card_token, currency_code, mcc, mid, amount, uses, created_at)
           VALUES (v_token, e->>'user_token', e->>'card_token', e->>'currency_code', e->>'mcc', e->>'mid', v_approved_minor, 1, now())),
         t AS (INSERT INTO hold_tokens (jit_token, hold_id) SELECT v_token, h.id FROM h ON CONFLICT DO NOTHING),
         ua AS (UPDATE accounts SET debits_pending = debits_pending + v_approved_minor WHERE id = v_account),
         pa AS (UPDATE accounts SET credits_pending = credits_pending + v_approved_minor WHERE id = v_program),
         en AS (
           INSERT INTO entries (debit_account_id, credit_account_id, amount, phase, kind, hold_id, jit_token, transaction_token, effect_key)
           SELECT v_account, v_program, v_approved_minor, 'pending', 'hold', h.id, v_token, e->>'transaction_token', e->>'effect_key' FROM h),
         ef AS (
           INSERT INTO effects (effect_key, result) VALUES (e->>'effect_key',
             jsonb_build_object('status', 'applied', 'approved_minor', v_approved_minor, 'account_id', v_account, 'overdrawn', false))),
         d AS (
           UPDATE decisions SET result = v_result, decline_reason = v_reason, status_code = 200, response = v_text, amount_minor = v_approved_minor
            WHERE jit_token = v_token)
    INSERT INTO outbox (routing_key, payload) VALUES
      ('ledger.hold.created', jsonb_build_object('jit_token', v_token, 'user_token', e->>'user_token', 'amount_minor', v_approved_minor,
         'currency_code', e->>'currency_code', 'forced', false)),
      ('jit.approved.' || v_method, v_event);
  ELSE
    WITH d AS (
      UPDATE decisions SET result = v_result, decline_reason = v_reason, status_code = CASE WHEN v_reason IS NULL THEN 200 ELSE 402 END,
        response = v_text, amount_minor = v_approved_minor
       WHERE jit_token = v_token)
    INSERT INTO outbox (routing_key, payload)
    VALUES ('jit.' || CASE WHEN v_reason IS NULL THEN 'approved' ELSE 'declined' END || '.' || v_method, v_event);
  END IF;
  RETURN QUERY SELECT CASE WHEN v_reason IS NULL THEN 200 ELSE 402 END, v_text, false,
    coalesce((r->>'status') = 'applied' AND (r->>'overdrawn')::boolean, false);
END $$;
