-- Expires the hold placed by `p_root` if it is still pending and past its expiry. Returns the amount released.
-- A hold not (yet) expired is left as it is: no hold row is created for it.
CREATE OR REPLACE FUNCTION hold_expire(p_root text) RETURNS bigint LANGUAGE plpgsql
-- Key lookups only: jit_decide.sql says why a cached plan must not scan a table whole.
SET enable_seqscan = off SET jit = off AS $$
DECLARE
  v_account bigint;
  h holds;
BEGIN
  SELECT s.account_id INTO v_account FROM hold_states s
   WHERE s.jit_token = p_root AND s.status = 'PENDING' AND s.expires_at <= now();
  IF v_account IS NULL THEN RETURN 0; END IF;
  PERFORM 1 FROM accounts WHERE id = v_account FOR UPDATE;
  -- Again under the account's lock: a clearing may have settled it meanwhile.
  h := hold_lock(p_root, v_account);
  IF h.status IS DISTINCT FROM 'PENDING' OR h.expires_at > now() THEN RETURN 0; END IF;
  RETURN hold_release(h, NULL, 'EXPIRED', p_root || ':expire', 'hold.expired', p_root, NULL);
END $$;
