-- Minor units as a fixed decimal string ("12.50"; "500" for a currency without decimals), like formatMinor in src/money.ts.
CREATE OR REPLACE FUNCTION format_minor(p_minor bigint, p_exponent int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT round(p_minor::numeric / (10::numeric ^ p_exponent), p_exponent)::text $$;
