-- The mutable state of the hold placed by `p_root`, created from the decision that placed it on its first change, and
-- locked. The caller has locked the hold's account already: no two transactions create the same hold row.
-- NULL when there is no such hold.
CREATE OR REPLACE FUNCTION hold_lock(p_root text) RETURNS holds LANGUAGE plpgsql AS $$
DECLARE h holds;
BEGIN
  SELECT * INTO h FROM holds WHERE jit_token = p_root FOR UPDATE;
  IF NOT FOUND THEN
    INSERT INTO holds (jit_token, account_id, program_account_id, user_token, card_token, amount, remaining, created_at, expires_at)
    SELECT d.jit_token, d.account_id, d.program_account_id, d.user_token, d.card_token, d.hold_minor, d.hold_minor, d.created_at, d.expires_at
      FROM decisions d WHERE d.jit_token = p_root AND d.hold_minor IS NOT NULL AND d.hold_of IS NULL
    RETURNING * INTO h;
  END IF;
  RETURN h;
END $$;
