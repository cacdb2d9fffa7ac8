-- Whole device flows for the memory scenario: a device authorization, then one poll of
-- the code it returned (which answers authorization_pending), FLOWS times in all.
--   wrk ... -s flows.lua http://host:port/ -- AUTHORIZE_PATH TOKEN_PATH CLIENT_ID FLOWS THREADS MARKER_DIR
--
-- Each thread starts its share of FLOWS. Every answer to an authorization queues its
-- device_code; the next request of the thread polls a queued code when there is one, and
-- starts a new flow otherwise. When the thread has started its share and every one of
-- them has been answered and polled, it writes MARKER_DIR/flows-done-<thread> and stops;
-- bench/wrk.py interrupts wrk (SIGINT, which still runs done()) once every thread has.
-- While the last authorizations are in flight the thread has nothing new to send and
-- polls its last code again (a second poll, answered slow_down): "a poll or two".

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local common = require("common")

setup = common.setup
done = common.done

local GRANT = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"

local authorize_request
local token_path, client_id, host
local quota = 0
local marker = nil
local queue = {}
local last_code = nil
local started = 0    -- authorizations sent
local answered = 0   -- authorizations answered with a device code
local failed = 0     -- answers that were neither a device code nor a poll's expected error
local finished = false
cursor = -1
issued = 0

function init(args)
   local authorize_path = args[1]
   token_path = args[2]
   client_id = args[3]
   local flows, nthreads = tonumber(args[4]), tonumber(args[5])
   marker = args[6] .. "/flows-done-" .. id
   quota = common.quota(flows, nthreads)
   host = wrk.host .. ":" .. wrk.port
   local headers = common.form_headers()
   headers["Host"] = host
   authorize_request = wrk.format("POST", authorize_path, headers, "client_id=" .. client_id)
end

local function poll(code)
   local headers = common.form_headers()
   headers["Host"] = host
   return wrk.format("POST", token_path, headers,
      "grant_type=" .. GRANT .. "&device_code=" .. code .. "&client_id=" .. client_id)
end

-- wrk's check of request() must not count as a flow started.
request = common.counted_requests(function() return authorize_request end, function()
   issued = issued + 1
   if #queue > 0 then
      last_code = table.remove(queue)
      return poll(last_code)
   end
   if started < quota then
      started = started + 1
      return authorize_request
   end
   if not finished and answered + failed >= quota then
      finished = true
      common.finish(marker)
   end
   if last_code then return poll(last_code) end
   return authorize_request  -- nothing answered yet (every flow failed so far)
end)

function response(status, headers, body)
   common.response(status, headers, body)
   local code = body and string.match(body, '"device_code"%s*:%s*"([^"]+)"')
   if code then
      answered = answered + 1
      queue[#queue + 1] = code
   elseif not (status == 400 and body and (string.find(body, "authorization_pending", 1, true)
         or string.find(body, "slow_down", 1, true))) then
      failed = failed + 1
   end
end
