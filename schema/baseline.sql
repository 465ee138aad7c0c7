-- Ledger v2 baseline (DESIGN §3): the whole schema, top to bottom. Functions live one per file in schema/functions/
-- and are re-applied when their checksum changes; numbered migrations in migrations/ come after this file and are
-- immutable. Money is bigint minor units everywhere.

-- Cardholders and cards --------------------------------------------------------------------------------------------

-- Context versions (DESIGN §8): a change to what a decision reads (a status, a card, a control) bumps a version in the
-- writing transaction (schema/functions/context_changed.sql); a decision carries the versions it used and the ledger
-- refuses a stale one. Existing users start at 1; a user that does not exist has version 0.
CREATE SEQUENCE context_version_seq START 2;

CREATE TABLE users (
  token text PRIMARY KEY CHECK (token ~ '^[A-Za-z0-9_-]{1,36}$'),
  first_name text,
  last_name text,
  metadata jsonb NOT NULL DEFAULT '{}',
  status text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'SUSPENDED', 'CLOSED')),
  -- When the status took effect (Marqeta's transition time or the admin change): an older transition is not applied.
  status_since timestamptz,
  context_version bigint NOT NULL DEFAULT nextval('context_version_seq'),
  created_time timestamptz NOT NULL DEFAULT now(),
  last_modified_time timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cards (
  token text PRIMARY KEY CHECK (token ~ '^[A-Za-z0-9_-]{1,36}$'),
  user_token text NOT NULL REFERENCES users,
  state text NOT NULL DEFAULT 'ACTIVE' CHECK (state IN ('ACTIVE', 'SUSPENDED', 'TERMINATED', 'UNACTIVATED')),
  state_since timestamptz,
  created_time timestamptz NOT NULL DEFAULT now(),
  last_modified_time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cards_user ON cards (user_token);

-- The version of the program-wide controls: one row.
CREATE TABLE program_context (
  id boolean PRIMARY KEY DEFAULT true CHECK (id),
  version bigint NOT NULL
);
INSERT INTO program_context (version) VALUES (1);

-- Spending controls (DESIGN §6). An association with neither token applies to the whole program.
CREATE TABLE velocity_controls (
  token text PRIMARY KEY CHECK (token ~ '^[A-Za-z0-9_-]{1,36}$'),
  name text,
  user_token text REFERENCES users,
  card_token text REFERENCES cards,
  currency_code char(3) NOT NULL CHECK (currency_code ~ '^[A-Z]{3}$'),
  amount_limit bigint CHECK (amount_limit >= 0),
  usage_limit int CHECK (usage_limit >= 0),
  velocity_window text NOT NULL CHECK (velocity_window IN ('DAY', 'WEEK', 'MONTH', 'LIFETIME', 'TRANSACTION')),
  mcc text,
  mid text,
  active boolean NOT NULL DEFAULT true,
  created_time timestamptz NOT NULL DEFAULT now(),
  CHECK (amount_limit IS NOT NULL OR usage_limit IS NOT NULL)
);
CREATE INDEX velocity_controls_user ON velocity_controls (user_token) WHERE active;

CREATE TABLE auth_controls (
  token text PRIMARY KEY CHECK (token ~ '^[A-Za-z0-9_-]{1,36}$'),
  name text,
  user_token text REFERENCES users,
  card_token text REFERENCES cards,
  mcc text,
  mid text,
  active boolean NOT NULL DEFAULT true,
  created_time timestamptz NOT NULL DEFAULT now(),
  CHECK (mcc IS NOT NULL OR mid IS NOT NULL)
);
CREATE INDEX auth_controls_user ON auth_controls (user_token) WHERE active;

-- Accounts --------------------------------------------------------------------------------------------------------

-- One account per (user, currency); the program's funding side is sharded (shard 0..63, user_token NULL) so that
-- concurrent batches do not all queue on one counterparty row. available = credits_posted - debits_posted -
-- debits_pending. The balance columns are not indexed and pages keep room (fillfactor), so a decision's update of an
-- account is a HOT update: no index entry written.
CREATE TABLE accounts (
  id bigserial PRIMARY KEY,
  user_token text REFERENCES users,
  shard smallint NOT NULL DEFAULT 0 CHECK (shard BETWEEN 0 AND 63),
  currency_code char(3) NOT NULL CHECK (currency_code ~ '^[A-Z]{3}$'),
  credits_posted bigint NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
  debits_posted bigint NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
  credits_pending bigint NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
  debits_pending bigint NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
  created_time timestamptz NOT NULL DEFAULT now(),
  CHECK (user_token IS NULL OR shard = 0)
) WITH (fillfactor = 50);
CREATE UNIQUE INDEX accounts_user_currency ON accounts (user_token, currency_code) WHERE user_token IS NOT NULL;
CREATE UNIQUE INDEX accounts_program_currency ON accounts (currency_code, shard) WHERE user_token IS NULL;

-- Decisions: one row per JIT token, written once with its final answer ------------------------------------------

-- The JIT idempotency record (the exact status and bytes answered) and, for an approved hold, the pending transfer
-- itself: `hold_minor` debited pending from `account_id` to `program_account_id`. An incremental's row names the hold
-- it adds to (`hold_of`). `xid` orders the rows for the event relay (DESIGN §7). No foreign keys: the only writer is
-- jit_decide, which has the rows locked already, and a key check is a read per decision.
CREATE TABLE decisions (
  jit_token text PRIMARY KEY,
  xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  method text NOT NULL,
  user_token text,
  card_token text,
  transaction_token text,
  currency_code char(3),
  result text NOT NULL CHECK (result IN ('approved', 'declined', 'recorded')),
  decline_reason text,
  status_code int NOT NULL CHECK (status_code IN (200, 402)),
  -- The approved amount of a hold or an immediate debit.
  amount_minor bigint,
  hold_minor bigint CHECK (hold_minor > 0),
  hold_of text,
  account_id bigint,
  program_account_id bigint,
  expires_at timestamptz,
  -- The decision's ledger effect drove the account negative (stand-in): published as ledger.overdrawn.
  overdrawn boolean NOT NULL DEFAULT false,
  request jsonb,
  response text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK (hold_minor IS NULL OR (account_id IS NOT NULL AND program_account_id IS NOT NULL AND (hold_of IS NOT NULL OR expires_at IS NOT NULL)))
);
CREATE INDEX decisions_user_time ON decisions (user_token, created_at DESC);
CREATE INDEX decisions_card_time ON decisions (card_token, created_at DESC);
CREATE INDEX decisions_xid ON decisions (xid, jit_token);
CREATE INDEX decisions_hold_expiry ON decisions (expires_at) WHERE hold_minor IS NOT NULL AND hold_of IS NULL;

-- Transfers: immutable, one row per money movement ----------------------------------------------------------------

-- `id` is the exactly-once key (`<jit token>:<kind>`, `<transaction token>:<type>`, `admin:<scope>:<key>`): a second
-- attempt finds the first. kind: pending (a hold placed outside a decision: a webhook's stand-in), post (settles a
-- hold: `amount` posted, `released` taken off the pending side), void (releases `released` of a hold), single (a
-- posted debit or credit). `code` says what it was and which event it yields. An effect that moved nothing (a
-- reversal of an unknown hold, a key superseded by a later message) is a row with no accounts and zero amounts: it
-- still claims its key.
CREATE TABLE transfers (
  id text PRIMARY KEY,
  xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  kind text NOT NULL CHECK (kind IN ('pending', 'post', 'void', 'single')),
  code text NOT NULL,
  debit_account_id bigint REFERENCES accounts,
  credit_account_id bigint REFERENCES accounts,
  amount bigint NOT NULL DEFAULT 0 CHECK (amount >= 0),
  released bigint NOT NULL DEFAULT 0 CHECK (released >= 0),
  -- The hold (its creating JIT token) a pending, post or void transfer belongs to.
  hold_jit_token text,
  user_token text,
  currency_code char(3),
  jit_token text,
  transaction_token text,
  reference text,
  overdrawn boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK ((amount = 0 AND released = 0) OR (debit_account_id IS NOT NULL AND credit_account_id IS NOT NULL)),
  CHECK (debit_account_id IS DISTINCT FROM credit_account_id OR debit_account_id IS NULL)
);
CREATE INDEX transfers_xid ON transfers (xid, id);
CREATE INDEX transfers_hold ON transfers (hold_jit_token) WHERE hold_jit_token IS NOT NULL;
CREATE INDEX transfers_debit ON transfers (debit_account_id);
CREATE INDEX transfers_credit ON transfers (credit_account_id);

-- A hold's mutable state, created on its first change (an incremental, a clearing, a reversal, a void, expiry) from
-- the decision or pending transfer that placed it; until then the hold is that row, PENDING, with all of it
-- remaining. Only this hold's own operations touch the row, always after locking its account.
CREATE TABLE holds (
  jit_token text PRIMARY KEY,
  account_id bigint NOT NULL REFERENCES accounts,
  program_account_id bigint NOT NULL REFERENCES accounts,
  user_token text NOT NULL,
  card_token text,
  amount bigint NOT NULL CHECK (amount > 0),
  remaining bigint NOT NULL CHECK (remaining >= 0 AND remaining <= amount),
  posted bigint NOT NULL DEFAULT 0 CHECK (posted >= 0),
  status text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'POSTED', 'VOIDED', 'EXPIRED')),
  forced boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  resolved_at timestamptz,
  CHECK ((status = 'PENDING') = (resolved_at IS NULL)),
  CHECK (status = 'PENDING' OR remaining = 0)
);
CREATE INDEX holds_pending_expiry ON holds (expires_at) WHERE status = 'PENDING';

-- Every hold with its current state, whether or not it has changed since it was placed.
CREATE VIEW hold_states AS
  SELECT h.jit_token, h.account_id, h.program_account_id, h.user_token, h.card_token, h.amount, h.remaining, h.posted,
         h.status, h.forced, h.created_at, h.expires_at, h.resolved_at
    FROM holds h
  UNION ALL
  SELECT d.jit_token, d.account_id, d.program_account_id, d.user_token, d.card_token, d.hold_minor, d.hold_minor, 0,
         'PENDING', false, d.created_at, d.expires_at, NULL
    FROM decisions d
   WHERE d.hold_minor IS NOT NULL AND d.hold_of IS NULL
     AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.jit_token = d.jit_token);

-- Velocity usage: written only when a window control applies to the decision (DESIGN §3), one row per approved
-- purchase, adjusted when its hold is increased, settled or released so that a released hold gives its amount (and,
-- fully released, its use) back.
CREATE TABLE spend (
  jit_token text PRIMARY KEY,
  user_token text NOT NULL,
  card_token text,
  currency_code char(3) NOT NULL,
  mcc text,
  mid text,
  amount bigint NOT NULL CHECK (amount >= 0),
  uses int NOT NULL CHECK (uses IN (0, 1)),
  created_at timestamptz NOT NULL
);
CREATE INDEX spend_user_time ON spend (user_token, currency_code, created_at);

-- Admin idempotency keys, scoped to route and user: the first answer is replayed for an equal request.
CREATE TABLE idempotency_keys (
  scope text NOT NULL,
  key text NOT NULL,
  fingerprint text NOT NULL,
  status_code int,
  response jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (scope, key)
);

-- Events (DESIGN §7) ----------------------------------------------------------------------------------------------

-- The relay's position: every decision and transfer row at or before (xid, source, key) has been published and
-- confirmed. One row, advanced after the confirms.
CREATE TABLE event_cursor (
  id boolean PRIMARY KEY DEFAULT true CHECK (id),
  xid xid8 NOT NULL DEFAULT '0',
  source text NOT NULL DEFAULT '',
  key text NOT NULL DEFAULT '',
  updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO event_cursor DEFAULT VALUES;
