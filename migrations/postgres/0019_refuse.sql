-- Refuses a send inside the one statement that enqueues it (a hard-capped budget without room
-- for it): the error aborts the statement, so nothing of the message is stored. Its SQLSTATE,
-- HB001, is Herald's own; the message is the budget's name.
CREATE FUNCTION herald_refuse(budget text) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'HB001', MESSAGE = budget;
END
$$;
