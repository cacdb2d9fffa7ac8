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
local size = 0
cursor = 0   -- next position in this thread's slice, read by done()
issued = 0

function init(args)
   local path, nthreads = args[1], tonumber(args[2])
   local keys = {}
   for line in io.lines(path) do
      if #line > 0 then keys[#keys + 1] = line end
   end
   local lo = math.floor(id * #keys / nthreads) + 1
   local hi = math.floor((id + 1) * #keys / nthreads)
   if hi < lo then error("fewer keys than threads") end
   local host = wrk.host .. ":" .. wrk.port
   for i = lo, hi do
      local headers = {
         ["Host"] = host,
         ["Accept"] = "application/json",
         ["User-Agent"] = common.headers["User-Agent"],
         ["Authorization"] = "Bearer " .. keys[i],
      }
      prepared[#prepared + 1] = wrk.format("GET", wrk.path, headers)
   end
   size = #prepared
end

function request()
   local r = prepared[cursor + 1]
   cursor = (cursor + 1) % size
   issued = issued + 1
   return r
end
