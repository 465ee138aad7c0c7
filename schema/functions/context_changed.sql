-- Context versions (DESIGN §8): every change to what a JIT decision reads bumps a version in the same transaction as
-- the change, as a trigger so that no writer (admin API, webhooks, scripts) can forget it; a decision carries the
-- versions of the context it used and jit_decide refuses a stale one.
--
-- * Cardholder version: users.context_version, bumped by a change of the user's status, of one of its cards (new card,
--   state) or of a control associated with the user or one of its cards. The bump also locks the user's account rows
--   (FOR UPDATE, in id order), the rows a money-moving decision locks anyway.
-- * Program version: program_context.version, bumped by a change of a program-wide control under an EXCLUSIVE lock of
--   program_context; every decision holds ROW SHARE on it (a fast-path relation lock, no row written).
--
-- Why a decision that commits after the change was answered has seen the new version: the change commits before it
-- is answered and holds its locks until then. A money-moving decision first locks, for each user scope it used, a row
-- that the change of that scope locks too: the cardholder's account row for jit_funding.user_token, the users row
-- (FOR SHARE, which the bump's UPDATE conflicts with) for another user (the owner of a card used through
-- acting_user_token); only then, in a later statement (a fresh READ COMMITTED snapshot), it reads the versions. Per
-- scope: if the decision took the lock first, the change waits for it. Otherwise it waits for the change to commit
-- and its snapshot sees the bump. An account created meanwhile cannot slip between the two: lock_user_account (and
-- jit_decide) share-lock the users row before creating one. A change of one row and a decision lock in one order
-- (program_context, users rows by token, accounts by id), so they never wait on each other in a cycle. A single
-- statement that changes the scope of several users' rows (a bulk UPDATE from a script; the service issues none)
-- fires this trigger once per row and can meet a decision batch in a cycle: PostgreSQL then aborts one of them after
-- deadlock_timeout, and the batch's decisions are decided again one by one.
CREATE OR REPLACE FUNCTION context_changed() RETURNS trigger LANGUAGE plpgsql
-- Key lookups only: jit_decide.sql says why a cached plan must not scan a table whole.
SET enable_seqscan = off SET jit = off AS $$
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
  -- Every user first, in token order, then all of their accounts in one statement in id order: a decision batch
  -- holds accounts of several users in id order, so locking one user's accounts before another user's row could wait
  -- on it in a cycle.
  FOR v_scope IN SELECT s FROM unnest(v_scopes) s WHERE s <> '' ORDER BY s LOOP
    UPDATE users SET context_version = nextval('context_version_seq') WHERE token = v_scope;
  END LOOP;
  PERFORM 1 FROM accounts WHERE user_token = ANY (v_scopes) ORDER BY id FOR UPDATE;
  RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER context_version BEFORE UPDATE OF status ON users
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION context_changed();
-- AFTER triggers fire after the foreign-key checks (RI_ triggers sort first), so the referenced card or user row is
-- share-locked before the user's version row: the same order as a card's own state change.
CREATE OR REPLACE TRIGGER context_version AFTER INSERT OR DELETE ON cards FOR EACH ROW EXECUTE FUNCTION context_changed();
CREATE OR REPLACE TRIGGER context_version_state AFTER UPDATE OF state ON cards
  FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION context_changed();
CREATE OR REPLACE TRIGGER context_version AFTER INSERT OR UPDATE OR DELETE ON auth_controls FOR EACH ROW EXECUTE FUNCTION context_changed();
CREATE OR REPLACE TRIGGER context_version AFTER INSERT OR UPDATE OR DELETE ON velocity_controls FOR EACH ROW EXECUTE FUNCTION context_changed();
