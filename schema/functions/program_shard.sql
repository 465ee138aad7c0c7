-- The program shard a single operation of this user uses.
CREATE OR REPLACE FUNCTION program_shard(p_user text) RETURNS int LANGUAGE sql IMMUTABLE AS $$
  SELECT abs(hashtext(coalesce(p_user, ''))) % 64 $$;
