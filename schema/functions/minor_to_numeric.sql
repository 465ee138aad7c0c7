-- Minor units as an exact numeric without trailing zeros (12.5 for 1250 cents): the JSON number of a JIT answer.
CREATE OR REPLACE FUNCTION minor_to_numeric(p_minor bigint, p_exponent int) RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$ SELECT trim_scale(p_minor::numeric / (10::numeric ^ p_exponent)) $$;
