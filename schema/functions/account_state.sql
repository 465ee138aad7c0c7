-- The account's raw columns as text (jsonb numbers would lose precision past 2^53 in JavaScript).
CREATE OR REPLACE FUNCTION account_state(p_account bigint) RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object('account_id', a.id, 'currency_code', a.currency_code,
    'credits_posted', a.credits_posted::text, 'debits_posted', a.debits_posted::text,
    'credits_pending', a.credits_pending::text, 'debits_pending', a.debits_pending::text)
  FROM accounts a WHERE a.id = p_account $$;
