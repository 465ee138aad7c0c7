-- Ledger and card-program schema (DESIGN §3). Money is bigint minor units everywhere.

CREATE TABLE users (
  token text PRIMARY KEY CHECK (token ~ '^[A-Za-z0-9_-]{1,36}$'),
  first_name text,
  last_name text,
  metadata jsonb NOT NULL DEFAULT '{}',
  status text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'SUSPENDED', 'CLOSED')),
  created_time timestamptz NOT NULL DEFAULT now(),
  last_modified_time timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cards (
  token text PRIMARY KEY CHECK (token ~ '^[A-Za-z0-9_-]{1,36}$'),
  user_token text NOT NULL REFERENCES users,
  state text NOT NULL DEFAULT 'ACTIVE' CHECK (state IN ('ACTIVE', 'SUSPENDED', 'TERMINATED', 'UNACTIVATED')),
  created_time timestamptz NOT NULL DEFAULT now(),
  last_modified_time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cards_user ON cards (user_token);

-- One account per (user, currency); the program's funding side is sharded (shard 0..63, user_token NULL) so that
-- concurrent decisions for different users do not all queue on one counterparty row lock.
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
);
CREATE UNIQUE INDEX accounts_user_currency ON accounts (user_token, currency_code) WHERE user_token IS NOT NULL;
CREATE UNIQUE INDEX accounts_program_currency ON accounts (currency_code, shard) WHERE user_token IS NULL;

CREATE TABLE holds (
  id bigserial PRIMARY KEY,
  jit_token text NOT NULL UNIQUE,
  account_id bigint NOT NULL REFERENCES accounts,
  program_account_id bigint NOT NULL REFERENCES accounts,
  user_token text NOT NULL,
  card_token text,
  amount bigint NOT NULL CHECK (amount > 0),
  remaining bigint NOT NULL CHECK (remaining >= 0 AND remaining <= amount),
  posted bigint NOT NULL DEFAULT 0 CHECK (posted >= 0),
  status text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'POSTED', 'VOIDED', 'EXPIRED')),
  forced boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  resolved_at timestamptz,
  CHECK ((status = 'PENDING') = (resolved_at IS NULL)),
  CHECK (status = 'PENDING' OR remaining = 0)
);
CREATE INDEX holds_pending_expiry ON holds (expires_at) WHERE status = 'PENDING';

-- Every JIT token that contributed to a hold (the original and its incrementals) points at it.
CREATE TABLE hold_tokens (
  jit_token text PRIMARY KEY,
  hold_id bigint NOT NULL REFERENCES holds
);

-- Append-only journal: one row per movement between a user account and a program account.
-- phase 'posted' moves *_posted, 'pending' adds to *_pending, 'release' takes from *_pending.
CREATE TABLE entries (
  id bigserial PRIMARY KEY,
  debit_account_id bigint NOT NULL REFERENCES accounts,
  credit_account_id bigint NOT NULL REFERENCES accounts,
  amount bigint NOT NULL CHECK (amount > 0),
  phase text NOT NULL CHECK (phase IN ('posted', 'pending', 'release')),
  kind text NOT NULL,
  hold_id bigint REFERENCES holds,
  jit_token text,
  transaction_token text,
  effect_key text,
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK (debit_account_id <> credit_account_id)
);

CREATE FUNCTION forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries FOR EACH ROW EXECUTE FUNCTION forbid_change();

-- Exactly-once effects: (jit token, kind) or (transaction token, type); shared by the JIT and webhook paths.
CREATE TABLE effects (
  effect_key text PRIMARY KEY,
  result jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now()
);

-- The idempotency record of JIT answers: the exact status and body sent.
CREATE TABLE decisions (
  jit_token text PRIMARY KEY,
  method text NOT NULL,
  user_token text,
  card_token text,
  transaction_token text,
  result text NOT NULL CHECK (result IN ('pending', 'approved', 'declined', 'recorded')),
  decline_reason text,
  status_code int NOT NULL CHECK (status_code IN (0, 200, 402)),
  response text NOT NULL,
  amount_minor bigint,
  currency_code char(3),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decisions_user_time ON decisions (user_token, created_at DESC);
CREATE INDEX decisions_card_time ON decisions (card_token, created_at DESC);

CREATE TABLE outbox (
  id bigserial PRIMARY KEY,
  routing_key text NOT NULL,
  payload jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

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

-- Velocity usage: one row per approved purchase (keyed by the JIT token that created it), adjusted by
-- incrementals, reversals, voids and expiry so that a released hold gives its amount (and use) back.
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

-- Admin idempotency keys, scoped to route and user; the response is replayed for an equal request.
CREATE TABLE idempotency_keys (
  scope text NOT NULL,
  key text NOT NULL,
  fingerprint text NOT NULL,
  status_code int,
  response jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (scope, key)
);
