-- The hold a JIT token placed or added to, named by the token that placed it: the token itself, the original of an
-- incremental, or NULL when the token held nothing.
CREATE OR REPLACE FUNCTION hold_root(p_jit text) RETURNS text LANGUAGE plpgsql STABLE
-- Key lookups only: jit_decide.sql says why a cached plan must not scan a table whole.
SET enable_seqscan = off SET jit = off AS $$
DECLARE v_root text;
BEGIN
  SELECT coalesce(d.hold_of, d.jit_token) INTO v_root FROM decisions d WHERE d.jit_token = p_jit AND d.hold_minor IS NOT NULL;
  IF v_root IS NULL THEN
    SELECT t.hold_jit_token INTO v_root FROM transfers t WHERE t.id = p_jit || ':hold' AND t.kind = 'pending';
  END IF;
  RETURN v_root;
END $$;
