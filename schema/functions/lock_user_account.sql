-- The user's account in a currency, created on first use, locked FOR UPDATE. NULL when the user does not exist.
-- The users row is share-locked before an account is created, so a creation waits for a context-version bump of
-- that user (which locks the user's accounts) instead of slipping past it (context_changed.sql).
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
