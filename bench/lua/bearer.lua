-- GET a protected resource with a bearer API key, over a pool of distinct valid keys.
--   wrk ... -s bearer.lua http://host:port/api/me -- KEYS_FILE THREADS
-- KEYS_FILE: one key a line. THREADS: wrk's -t. Thread i owns the i-th slice of the pool
-- and walks it round-robin, so consecutive requests present different keys (no cache of
-- one hot key can hide the lookup). Responses are classified (see common.lua).

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local common = require("common")

setup = common.setup
done = common.done
response = common.response

local prepared = {}
cursor = 0   -- next position in this thread's slice, read by done()
issued = 0

function init(args)
   local host = wrk.host .. ":" .. wrk.port
   for _, key in ipairs(common.share(args[1], tonumber(args[2]), "keys")) do
      local headers = {
         ["Host"] = host,
         ["Accept"] = "application/json",
         ["User-Agent"] = common.headers["User-Agent"],
         ["Authorization"] = "Bearer " .. key,
      }
      prepared[#prepared + 1] = wrk.format("GET", wrk.path, headers)
   end
end

request = common.round_robin(prepared)
