"""The fast path's statements, written out once and prepared by asyncpg.

Each runs alone on a pool connection, as its own transaction (autocommit). ``POLL``,
``START`` and ``USE`` serve the requests that arrive together
(:mod:`devicelink.storage.batching`): their parameters are arrays, one element a request.

``POLL`` and ``START`` restate, for speed, a rule whose home is
:mod:`devicelink.core.lifecycle` (see each); ``tests/storage/test_fast_path_store.py``
holds each copy to its rule.
"""

# A pending poll: read, judge and record in one round trip, the row locked so that
# concurrent polls of one code queue up. Restates, for a pending, unexpired code of a
# public client, :func:`devicelink.core.lifecycle.decide_poll` (where the rule lives):
# too fast when the last poll is less than ``interval`` ago, and then the interval grows
# by $4 up to $5 (RFC 8628 section 3.5). Any other code returns no row and changes nothing.
POLL = """
WITH req AS (
    SELECT *
    FROM unnest($1::bytea[], $2::text[], $3::timestamptz[]) WITH ORDINALITY
         AS r(device_code_hash, client_id, now, n)
), cur AS (
    SELECT d.id, r.n, r.now, d.interval,
           (d.last_polled_at IS NOT NULL
            AND d.last_polled_at > r.now - make_interval(secs => d.interval)) AS too_fast
    FROM req AS r
    JOIN device_authorizations AS d ON d.device_code_hash = r.device_code_hash
    JOIN clients AS c ON c.client_id = d.client_id
    WHERE d.client_id = r.client_id
      AND d.status = 'pending'
      AND d.expires_at > r.now
      AND NOT c.confidential
    ORDER BY d.id
    FOR UPDATE OF d
)
UPDATE device_authorizations AS d
SET last_polled_at = cur.now,
    interval = CASE WHEN cur.too_fast
                    THEN LEAST(cur.interval + $4::int, $5::int)
                    ELSE cur.interval END
FROM cur
WHERE d.id = cur.id
RETURNING cur.n, d.interval, cur.too_fast
"""


# A device authorization and its ``flow_started`` audit event. Restates, for a public
# client, the scope check of :func:`devicelink.core.lifecycle.granted_scope` (where the
# rule lives): no scope asked means the client's own, else every scope asked must be
# the client's. A flow that fails it, or whose code collides, is not stored.
START = """
WITH req AS (
    SELECT *
    FROM unnest($1::bytea[], $2::bytea[], $3::text[], $4::text[], $5::timestamptz[],
                $6::timestamptz[], $7::int[], $8::text[], $9::text[]) WITH ORDINALITY
         AS r(device_code_hash, user_code_hash, client_id, requested, created_at,
              expires_at, interval, request_ip, user_agent, n)
), ok AS (
    SELECT r.*, COALESCE(r.requested, c.scopes) AS scope
    FROM req AS r
    JOIN clients AS c ON c.client_id = r.client_id
    WHERE NOT c.confidential
      AND (r.requested IS NULL
           OR string_to_array(c.scopes, ' ') @> string_to_array(r.requested, ' '))
), d AS (
    INSERT INTO device_authorizations
        (device_code_hash, user_code_hash, client_id, scope, status, created_at,
         expires_at, interval, request_ip, user_agent)
    SELECT device_code_hash, user_code_hash, client_id, scope, 'pending', created_at,
           expires_at, interval, request_ip, user_agent
    FROM ok
    ORDER BY n
    ON CONFLICT DO NOTHING
    RETURNING id, device_code_hash, client_id, scope, created_at, request_ip, user_agent
), a AS (
    INSERT INTO audit_events (occurred_at, event, client_id, device_authorization_id, ip,
                              user_agent)
    SELECT created_at, $10::text, client_id, id, request_ip, user_agent
    FROM d
    ORDER BY id
)
SELECT ok.n, d.scope
FROM d
JOIN ok ON ok.device_code_hash = d.device_code_hash
"""


# A key's last use: a compare-and-set on the stored last use (as the repositories'
# ``record_use``), with the ``key_first_used`` audit event when there was none.
USE = """
WITH req AS (
    SELECT *
    FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::timestamptz[])
         AS r(id, now, ip, not_since)
), due AS (
    SELECT k.id, k.last_used_at, k.user_id, k.client_id, k.device_authorization_id,
           u.username, r.now, r.ip
    FROM req AS r
    JOIN api_keys AS k ON k.id = r.id
    JOIN users AS u ON u.id = k.user_id
    WHERE k.last_used_at IS NULL OR k.last_used_at < r.not_since
    ORDER BY k.id
    FOR UPDATE OF k
), written AS (
    UPDATE api_keys AS k
    SET last_used_at = due.now, last_used_ip = due.ip
    FROM due
    WHERE k.id = due.id
    RETURNING k.id
), first_use AS (
    INSERT INTO audit_events (occurred_at, event, user_id, username, client_id,
                              device_authorization_id, api_key_id, ip)
    SELECT now, $5::text, user_id, username, client_id, device_authorization_id, id, ip
    FROM due
    WHERE last_used_at IS NULL
)
SELECT id FROM written
"""


# A key and its owner, the columns :func:`devicelink.storage.rows.key_and_owner_from_row`
# reads (the same as the repositories' ``get_with_owner``).
KEY_WITH_OWNER = """
SELECT k.id, k.name, k.user_id, k.client_id, k.device_authorization_id, k.scope,
       k.created_at, k.expires_at, k.last_used_at, k.last_used_ip, k.revoked_at,
       k.external_id, u.username, u.disabled_at, u.created_at AS user_created_at,
       u.provider, u.subject
FROM api_keys AS k
JOIN users AS u ON u.id = k.user_id
WHERE k.key_hash = $1
"""
