-- The one-argument form it replaces (a function file that changes a signature drops the old one: CREATE OR REPLACE
-- would leave both).
DROP FUNCTION IF EXISTS hold_lock(text);
-- The mutable state of the hold placed by `p_root` on account `p_account`, created from the decision that placed it on
-- its first change, and locked. The caller has locked that account already, so no two transactions create the same
-- hold row; a hold of another account is not touched. NULL when there is no such hold on that account.
CREATE OR REPLACE FUNCTION hold_lock(p_root text, p_account bigint) RETURNS holds LANGUAGE plpgsql AS $$
DECLARE h holds;
BEGIN
  SELECT * INTO h FROM holds WHERE jit_token = p_root AND account_id = p_account FOR UPDATE;
  IF NOT FOUND THEN
    INSERT INTO holds (jit_token, account_id, program_account_id, user_token, card_token, amount, remaining, created_at, expires_at)
    SELECT d.jit_token, d.account_id, d.program_account_id, d.user_token, d.card_token, d.hold_minor, d.hold_minor, d.created_at, d.expires_at
      FROM decisions d WHERE d.jit_token = p_root AND d.account_id = p_account AND d.hold_minor IS NOT NULL AND d.hold_of IS NULL
    ON CONFLICT (jit_token) DO NOTHING
    RETURNING * INTO h;
  END IF;
  RETURN h;
END $$;
