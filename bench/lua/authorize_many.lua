-- Setup, not a measurement: create COUNT pending device codes through a device
-- authorization endpoint, for the pools of the poll scenarios, faster than any Python
-- client could on this machine.
--   wrk ... -s authorize_many.lua http://host:port/oauth/device/authorize -- CLIENT_ID COUNT THREADS OUT_DIR
--
-- Each thread sends its share of COUNT authorizations and writes the device_code and
-- user_code of every answer, "device_code user_code" a line, to OUT_DIR/codes-<thread>.
-- Once it has as many answers as its share (a few more authorizations may be in flight:
-- the extra codes are written too, and simply not used), it writes OUT_DIR/done-<thread>
-- and stops; bench/wrk.py interrupts wrk once every thread has. Answers without a device code
-- are counted by common.lua's response() and reported by the harness.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local common = require("common")

setup = common.setup
done = common.done

local authorize_request
local out, marker
local quota = 0
local sent = 0
local answered = 0
local failed = 0
local finished = false
cursor = -1
issued = 0

function init(args)
   local client_id, count, nthreads, dir = args[1], tonumber(args[2]), tonumber(args[3]), args[4]
   quota = common.quota(count, nthreads)
   out = assert(io.open(dir .. "/codes-" .. id, "w"))
   marker = dir .. "/done-" .. id
   local headers = common.form_headers()
   headers["Host"] = wrk.host .. ":" .. wrk.port
   authorize_request = wrk.format("POST", wrk.path, headers, "client_id=" .. client_id)
end

-- wrk's check of request() must not count as an authorization sent.
request = common.counted_requests(function() return authorize_request end, function()
   if not finished and sent >= quota and answered + failed >= quota then
      finished = true
      out:close()
      out = nil
      common.finish(marker)
   end
   sent = sent + 1
   issued = issued + 1
   return authorize_request
end)

function response(status, headers, body)
   common.response(status, headers, body)
   local device_code = body and string.match(body, '"device_code"%s*:%s*"([^"]+)"')
   local user_code = body and string.match(body, '"user_code"%s*:%s*"([^"]+)"')
   if device_code and user_code then
      answered = answered + 1
      if out then out:write(device_code, " ", user_code, "\n") end
   else
      failed = failed + 1
   end
end
