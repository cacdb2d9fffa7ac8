"""The fast path's statements, written out once and prepared by asyncpg.

Each runs alone on a pool connection, as its own transaction (autocommit). ``POLL``,
``START`` and ``USE`` serve the requests that arrive together
(:mod:`devicelink.storage.batching`): their parameters are arrays, one element a request.

``POLL`` and ``START`` restate, for speed, a rule whose home is
:mod:`devicelink.core.lifecycle` (see each); ``tests/storage/test_fast_path_store.py``
holds each copy to its rule, and ``tests/storage/test_poll_implementations.py`` ``POLL``
to the repositories' poll in every state a code can be in.
"""

# A poll of the token endpoint, any answer but the key's issuance, in one round trip:
# the repositories' ``poll`` (see :data:`devicelink.core.ports.POLL_CONTRACT`) as one
# statement. It does not decide the answer: it returns, for each request, whether the
# asking client is confidential (NULL: unknown) and the code's row, and Python hands the
# row to :func:`devicelink.core.lifecycle.decide_poll`. What it restates, for speed, is
# when a poll is recorded: exactly when no refusal of
# :func:`devicelink.core.lifecycle.poll_refusal` applies and the code is pending (issued
# to this client, not expired, pending), for a public client; and how, the pace of
# :func:`devicelink.core.lifecycle.pace_poll` (too early when the last poll is less than
# ``interval`` ago, and then the interval grows by $4 up to $5, RFC 8628 section 3.5).
# ``tests/storage/test_poll_implementations.py`` holds it to the repositories' poll.
#
# Only the rows it records are locked (in id order, so concurrent polls of one code
# queue up and batches never deadlock), and the pace is judged on the locked row, whose
# ``interval`` and ``last_polled_at`` are returned. A refused code (unknown, expired,
# denied, another client's) is only read: no lock, no transaction id, nothing written.
# A row the snapshot shows recordable but that changed before its lock (approved or
# denied meanwhile) is neither locked nor recorded: ``recorded`` is false while the
# decision on the snapshot's row is to pace it, and the caller decides afresh on the
# general path.
#
# A batch may poll one code several times (a hot or forged code): only its first poll
# (the lowest n) can be recorded. The others get the code's row as the statement read
# it: the caller answers those that record nothing (a refusal or the key's issuance
# reads nothing recording changes) and sends the rest again, judged after the first.
POLL = """
WITH req AS (
    SELECT *
    FROM unnest($1::bytea[], $2::text[], $3::timestamptz[]) WITH ORDINALITY
         AS r(device_code_hash, client_id, now, n)
), firsts AS (
    SELECT DISTINCT ON (device_code_hash) * FROM req ORDER BY device_code_hash, n
), locked AS (
    SELECT d.id, r.n, r.now, d.interval, d.last_polled_at
    FROM firsts AS r
    JOIN device_authorizations AS d ON d.device_code_hash = r.device_code_hash
    JOIN clients AS c ON c.client_id = r.client_id
    WHERE NOT c.confidential
      AND d.client_id = r.client_id
      AND d.expires_at > r.now
      AND d.status = 'pending'
    ORDER BY d.id
    FOR UPDATE OF d
), recorded AS (
    UPDATE device_authorizations AS d
    SET last_polled_at = l.now,
        interval = CASE WHEN l.last_polled_at > l.now - make_interval(secs => l.interval)
                        THEN LEAST(l.interval + $4::int, $5::int)
                        ELSE l.interval END
    FROM locked AS l
    WHERE d.id = l.id
)
SELECT r.n, c.confidential, d.id, d.client_id, d.scope, d.status, d.created_at,
       d.expires_at, COALESCE(l.interval, d.interval) AS interval,
       CASE WHEN l.id IS NULL THEN d.last_polled_at ELSE l.last_polled_at END
           AS last_polled_at,
       d.denial_reason, l.id IS NOT NULL AS recorded
FROM req AS r
LEFT JOIN clients AS c ON c.client_id = r.client_id
LEFT JOIN device_authorizations AS d ON d.device_code_hash = r.device_code_hash
LEFT JOIN locked AS l ON l.n = r.n
"""


# A device authorization and its ``flow_started`` audit event. Restates, for a public
# client, the scope check of :func:`devicelink.core.lifecycle.granted_scope` (where the
# rule lives): no scope asked means the client's own, else every scope asked must be
# the client's; and that the client may use the device grant (else the full path
# answers unauthorized_client: DeviceFlowService.start). A flow that fails them, or
# whose code collides, is not stored.
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
      AND 'urn:ietf:params:oauth:grant-type:device_code' = ANY(string_to_array(c.grant_types, ' '))
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


# A secret's rotation: a key found under a previous secret's hash ($3) takes the current
# one's ($2), as the repositories' ``rehash`` (a compare-and-set, only while the
# database's secret is this process's, $4), with a use as ``USE`` writes it for a key
# used before, announced as :func:`devicelink.storage.keycache.key_changed` does on $7.
REHASH_KEY = """
WITH moved AS (
    UPDATE api_keys AS k
    SET key_hash = $2,
        last_used_at = CASE WHEN k.last_used_at IS NULL THEN NULL ELSE $5::timestamptz END,
        last_used_ip = CASE WHEN k.last_used_at IS NULL THEN NULL ELSE $6::text END
    WHERE k.id = $1
      AND k.key_hash = $3
      AND EXISTS (SELECT 1 FROM instance_facts AS f
                  WHERE f.name = 'secret_fingerprint' AND f.value = $4)
    RETURNING k.id
)
SELECT id, pg_notify($7::text, 'k:' || id) FROM moved
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
