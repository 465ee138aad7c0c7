-- PL/pgSQL rather than SQL: PostgreSQL keeps a PL/pgSQL statement's plan for the session, while a SQL function it
-- cannot inline is parsed and planned on every call.
CREATE OR REPLACE FUNCTION account_balances(p_account bigint, p_exponent int) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
  RETURN (SELECT jsonb_build_object(
    'currency_code', a.currency_code,
    'available_balance', minor_to_numeric(a.credits_posted - a.debits_posted - a.debits_pending, p_exponent),
    'ledger_balance', minor_to_numeric(a.credits_posted - a.debits_posted, p_exponent),
    'pending_holds', minor_to_numeric(a.debits_pending, p_exponent))
  FROM accounts a WHERE a.id = p_account);
END $$;
