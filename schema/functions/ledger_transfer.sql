/*
 * Writes one transfer and moves its amounts on both accounts: the user's account (locked by the caller) first, then
 * the program shard. p_direction 'debit' takes from the user, 'credit' gives. kind pending adds `p_amount` to the
 * pending columns; post and single move `p_amount` on the posted columns; post and void take `p_released` off the
 * pending columns.
 */
CREATE OR REPLACE FUNCTION ledger_transfer(p_id text, p_kind text, p_code text, p_user_account bigint, p_program_account bigint,
  p_direction text, p_amount bigint, p_released bigint, p_hold text, p_user text, p_currency text, p_jit text, p_txn text,
  p_reference text DEFAULT NULL, p_overdrawn boolean DEFAULT false) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_debit bigint := CASE WHEN p_direction = 'debit' THEN p_user_account ELSE p_program_account END;
  v_credit bigint := CASE WHEN p_direction = 'debit' THEN p_program_account ELSE p_user_account END;
  v_moves boolean := coalesce(p_amount, 0) > 0 OR coalesce(p_released, 0) > 0;
BEGIN
  IF p_kind IN ('pending', 'void') AND p_direction <> 'debit' THEN RAISE EXCEPTION 'pending transfers only debit users'; END IF;
  IF v_moves THEN
    IF p_kind = 'pending' THEN
      UPDATE accounts SET debits_pending = debits_pending + p_amount WHERE id = p_user_account;
      UPDATE accounts SET credits_pending = credits_pending + p_amount WHERE id = p_program_account;
    ELSIF p_direction = 'debit' THEN
      UPDATE accounts SET debits_posted = debits_posted + coalesce(p_amount, 0), debits_pending = debits_pending - coalesce(p_released, 0)
       WHERE id = p_user_account;
      UPDATE accounts SET credits_posted = credits_posted + coalesce(p_amount, 0), credits_pending = credits_pending - coalesce(p_released, 0)
       WHERE id = p_program_account;
    ELSE
      UPDATE accounts SET credits_posted = credits_posted + p_amount WHERE id = p_user_account;
      UPDATE accounts SET debits_posted = debits_posted + p_amount WHERE id = p_program_account;
    END IF;
  END IF;
  INSERT INTO transfers (id, kind, code, debit_account_id, credit_account_id, amount, released, hold_jit_token, user_token,
                         currency_code, jit_token, transaction_token, reference, overdrawn)
  VALUES (p_id, p_kind, p_code, CASE WHEN v_moves THEN v_debit END, CASE WHEN v_moves THEN v_credit END,
          coalesce(p_amount, 0), coalesce(p_released, 0), p_hold, p_user, p_currency, p_jit, p_txn, p_reference, p_overdrawn);
END $$;
