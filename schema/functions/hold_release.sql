-- Releases part (or, with p_amount NULL, all) of a locked pending hold as one void transfer; a hold with nothing left
-- becomes p_final_status. Gives the released amount (and, when nothing was ever posted, the use) back to velocity.
-- Returns the amount released.
CREATE OR REPLACE FUNCTION hold_release(h holds, p_amount bigint, p_final_status text, p_id text, p_code text, p_jit text, p_txn text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_release bigint := least(coalesce(p_amount, h.remaining), h.remaining);
  v_currency text;
BEGIN
  SELECT currency_code INTO v_currency FROM accounts WHERE id = h.account_id;
  PERFORM ledger_transfer(p_id, 'void', CASE WHEN h.remaining - v_release = 0 THEN p_code ELSE 'hold.released' END,
    h.account_id, h.program_account_id, 'debit', 0, v_release, h.jit_token, h.user_token, v_currency, p_jit, p_txn);
  UPDATE holds SET remaining = remaining - v_release,
    status = CASE WHEN remaining - v_release = 0 THEN p_final_status ELSE status END,
    resolved_at = CASE WHEN remaining - v_release = 0 THEN now() ELSE resolved_at END
  WHERE jit_token = h.jit_token;
  UPDATE spend SET amount = greatest(0, amount - v_release),
    uses = CASE WHEN h.remaining - v_release = 0 AND h.posted = 0 THEN 0 ELSE uses END
  WHERE jit_token = h.jit_token;
  RETURN v_release;
END $$;
