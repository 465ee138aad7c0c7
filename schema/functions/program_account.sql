-- The program funding account's shard `p_shard` (0..63) in a currency, created on first use. A batch of decisions
-- uses one shard for all of its holds; a single operation uses its user's (program_shard).
CREATE OR REPLACE FUNCTION program_account(p_currency text, p_shard int) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_id bigint;
BEGIN
  SELECT id INTO v_id FROM accounts WHERE user_token IS NULL AND currency_code = p_currency AND shard = p_shard;
  IF v_id IS NULL THEN
    INSERT INTO accounts (user_token, shard, currency_code) VALUES (NULL, p_shard, p_currency) ON CONFLICT DO NOTHING RETURNING id INTO v_id;
    IF v_id IS NULL THEN
      SELECT id INTO v_id FROM accounts WHERE user_token IS NULL AND currency_code = p_currency AND shard = p_shard;
    END IF;
  END IF;
  RETURN v_id;
END $$;
