-- Token poll (RFC 8628 section 3.4) over a pool of distinct pending device codes.
--   wrk ... -s poll.lua http://host:port/oauth/device/token -- CODES_FILE THREADS OFFSETS [CLIENT_ID [DELAY_MS [RATE]]]
-- CODES_FILE: one device code a line. THREADS: wrk's -t. OFFSETS: "o0,o1,...", where
-- each thread starts in its slice (so consecutive runs continue where the last stopped).
-- CLIENT_ID: the public client the codes were issued to (default devicelink-cli).
-- DELAY_MS: when above 0, each connection waits that long after every answer before its
-- next request (wrk's delay() hook). Only the smoke run (--smoke) uses it, to poll a tiny
-- pool slowly enough that no code is polled twice within its interval.
-- RATE: when above 0 (and DELAY_MS is 0), wrk sends at most RATE requests a second in
-- all, each thread RATE/THREADS, on a schedule: a thread's requests are at least
-- THREADS/RATE seconds apart (a request that could not go at its time, every connection
-- being busy, moves the schedule on rather than sending a burst to catch up). Unlike a
-- fixed DELAY_MS, the server's latency does not slow the pace down as long as enough
-- connections are free. bench/soak.py uses it: a code is polled again only after the
-- thread has sent the rest of its slice, so never sooner than slice x THREADS/RATE s.
--
-- The same script serves the slow_down scenario: a pool of a few codes, polled as fast
-- as possible, so every poll comes before the code's interval has passed.
--
-- Thread i owns the i-th slice of the pool and walks it round-robin, so a code is polled
-- again only after the thread has polled every other code of its slice: with N codes
-- and R requests a second, every N/R seconds. As long as that is longer than the
-- code's interval (5 s), the server's answer is "authorization_pending"; otherwise it
-- is "slow_down", which the harness reports. Responses are classified (see common.lua).

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local common = require("common")

setup = common.setup
done = common.done
response = common.response

local GRANT = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"

-- Seconds of CLOCK_MONOTONIC (wrk runs LuaJIT; its os.time() counts whole seconds).
local ffi = require("ffi")
ffi.cdef[[
struct devicelink_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clk_id, struct devicelink_timespec *tp);
]]
local timespec = ffi.new("struct devicelink_timespec")
local function monotonic()
   ffi.C.clock_gettime(1, timespec)  -- 1: CLOCK_MONOTONIC on Linux
   return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) / 1e9
end

local prepared = {}
cursor = 0   -- next position in this thread's slice (0-based), read by done()
issued = 0

function init(args)
   local path, nthreads, offsets = args[1], tonumber(args[2]), args[3] or ""
   local client_id = args[4] or "devicelink-cli"
   local delay_ms = tonumber(args[5] or "0") or 0
   local rate = tonumber(args[6] or "0") or 0
   if delay_ms > 0 then
      -- wrk looks for a global delay() after init() has run in the first thread.
      delay = function() return delay_ms end
   elseif rate > 0 then
      -- wrk calls delay() when a connection is free to send, then request() once the
      -- delay has passed; the next free time slot of this thread is claimed here.
      local gap = nthreads / rate
      local next_at = nil
      delay = function()
         local now = monotonic()
         if next_at == nil or next_at < now then next_at = now end
         local wait = next_at - now
         next_at = next_at + gap
         return math.ceil(wait * 1000)
      end
   end
   local host = wrk.host .. ":" .. wrk.port
   for _, code in ipairs(common.share(path, nthreads, "device codes")) do
      local body = "grant_type=" .. GRANT .. "&device_code=" .. code .. "&client_id=" .. client_id
      local headers = common.form_headers()
      headers["Host"] = host
      prepared[#prepared + 1] = wrk.format("POST", wrk.path, headers, body)
   end
   local k = 0
   for offset in string.gmatch(offsets, "[^,]+") do
      if k == id then cursor = tonumber(offset) % #prepared end
      k = k + 1
   end
end

request = common.round_robin(prepared)
