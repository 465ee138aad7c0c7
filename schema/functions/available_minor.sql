CREATE OR REPLACE FUNCTION available_minor(a accounts) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
  SELECT a.credits_posted - a.debits_posted - a.debits_pending $$;
