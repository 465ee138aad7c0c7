-- The velocity decline of a purchase of `p_amount` under the window controls `p_velocity` (handed over by the rules
-- in src/jit/rules.ts), counted from `spend` while the user's account is locked: amount windows first, then usage
-- windows (DESIGN §4). NULL when every window has room.
CREATE OR REPLACE FUNCTION velocity_exceeded(p_velocity jsonb, p_currency text, p_amount bigint, p_incremental boolean)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
  c record;
  v_reason text;
BEGIN
  FOR c IN
    SELECT x.amount_limit, x.usage_limit, coalesce(s.amount, 0) AS used_amount, coalesce(s.uses, 0) AS used_count
      FROM jsonb_to_recordset(p_velocity) AS x(amount_limit bigint, usage_limit int, since timestamptz,
             user_token text, card_token text, mcc text, mid text)
      CROSS JOIN LATERAL (
        SELECT sum(sp.amount) AS amount, sum(sp.uses) AS uses FROM spend sp
         WHERE sp.currency_code = p_currency AND sp.created_at >= x.since
           AND (x.user_token IS NULL OR sp.user_token = x.user_token)
           AND (x.card_token IS NULL OR sp.card_token = x.card_token)
           AND (x.mcc IS NULL OR sp.mcc = x.mcc) AND (x.mid IS NULL OR sp.mid = x.mid)) s
  LOOP
    IF c.amount_limit IS NOT NULL AND c.used_amount + p_amount > c.amount_limit THEN
      RETURN 'AMOUNT_LIMIT_EXCEEDED';
    END IF;
    IF c.usage_limit IS NOT NULL AND NOT p_incremental AND c.used_count + 1 > c.usage_limit THEN
      v_reason := 'TRANSACTION_COUNT_LIMIT_EXCEEDED';
    END IF;
  END LOOP;
  RETURN v_reason;
END $$;
