-- Shared by the wrk scripts of the benchmark (bench/wrk.py runs them).
--
-- Each wrk thread runs its own Lua state. The main state's setup() numbers the threads
-- (global `id`, 0-based) and keeps them, so done() can collect what every thread
-- counted. done() prints ONE line, "WRK_RESULT {json}", that bench/wrk.py parses:
-- requests, duration, socket errors, non-2xx/3xx count, latency percentiles (µs),
-- the answer mix (when the script classifies responses) and each thread's cursor.

local M = {}

local threads = {}

M.headers = {
   ["Content-Type"] = "application/x-www-form-urlencoded",
   ["User-Agent"] = "devicelink-bench/1 (wrk)",
}

-- A fresh copy, because wrk.format() writes Host and Content-Length into the table.
function M.form_headers()
   local h = {}
   for k, v in pairs(M.headers) do h[k] = v end
   return h
end

-- This thread's share of a pool (the non-empty lines of `path`: codes or keys): thread
-- i of n takes the i-th n-th, so no two threads send the same one.
function M.share(path, nthreads, what)
   local lines = {}
   for line in io.lines(path) do
      if #line > 0 then lines[#lines + 1] = line end
   end
   local lo = math.floor(id * #lines / nthreads) + 1
   local hi = math.floor((id + 1) * #lines / nthreads)
   if hi < lo then error("fewer " .. what .. " than threads") end
   local share = {}
   for i = lo, hi do share[#share + 1] = lines[i] end
   return share
end

-- A request() that walks `prepared` round-robin from the global `cursor` (0-based, read
-- by done()), counting in the global `issued`.
function M.round_robin(prepared)
   return function()
      local r = prepared[cursor + 1]
      cursor = (cursor + 1) % #prepared
      issued = issued + 1
      return r
   end
end

-- This thread's share of `count` (thread i of n).
function M.quota(count, nthreads)
   return math.floor((id + 1) * count / nthreads) - math.floor(id * count / nthreads)
end

-- A request() for scripts that count what they send. wrk calls request() once in the
-- first thread, right after init(), to check what it returns, and never sends that
-- request: that call gets first() and is not counted; every other call gets send().
function M.counted_requests(first, send)
   local checked = false
   return function()
      if not checked then
         checked = true
         if id == 0 then return first() end
      end
      return send()
   end
end

-- Tell bench/wrk.py this thread is done (a marker file), and stop it.
function M.finish(marker)
   local f = io.open(marker, "w")
   if f then f:write("done\n"); f:close() end
   wrk.thread:stop()
end

function M.setup(thread)
   thread:set("id", #threads)
   table.insert(threads, thread)
end

-- response(): count answers per thread as "<status>" for 2xx, else
-- "<status> <error>" with the RFC 6749 "error" member of the JSON body when there is one.
-- Only scripts that need the answer mix install it: it makes wrk hand every body to Lua.
answers = {}
function M.response(status, headers, body)
   local key
   if status >= 200 and status < 300 then
      key = tostring(status)
   else
      local err = body and string.match(body, '"error"%s*:%s*"([^"]*)"')
      if err then key = status .. " " .. err else key = tostring(status) end
   end
   answers[key] = (answers[key] or 0) + 1
end

local function json_string(s)
   return '"' .. string.gsub(tostring(s), '[%c"\\]', function(c)
      return string.format("\\u%04x", string.byte(c))
   end) .. '"'
end

local function json_object(t)
   local parts = {}
   for k, v in pairs(t) do
      table.insert(parts, json_string(k) .. ":" .. string.format("%d", v))
   end
   table.sort(parts)
   return "{" .. table.concat(parts, ",") .. "}"
end

function M.done(summary, latency, requests)
   local merged = {}
   local cursors = {}
   local issued = {}
   for i, thread in ipairs(threads) do
      local counted = thread:get("answers")
      if counted then
         for k, v in pairs(counted) do merged[k] = (merged[k] or 0) + v end
      end
      cursors[i] = string.format("%d", thread:get("cursor") or -1)
      issued[i] = string.format("%d", thread:get("issued") or -1)
   end
   local e = summary.errors
   local p = function(q) return string.format("%.1f", latency:percentile(q)) end
   io.write("WRK_RESULT {",
      '"requests":', string.format("%d", summary.requests),
      ',"duration_us":', string.format("%d", summary.duration),
      ',"bytes":', string.format("%d", summary.bytes),
      ',"errors":{"connect":', e.connect, ',"read":', e.read, ',"write":', e.write,
      ',"status":', e.status, ',"timeout":', e.timeout, "}",
      ',"latency_us":{"p50":', p(50), ',"p90":', p(90), ',"p99":', p(99),
      ',"p99.9":', p(99.9), ',"mean":', string.format("%.1f", latency.mean),
      ',"stdev":', string.format("%.1f", latency.stdev),
      ',"max":', string.format("%.1f", latency.max), "}",
      ',"answers":', json_object(merged),
      ',"cursors":[', table.concat(cursors, ","), "]",
      ',"issued":[', table.concat(issued, ","), "]",
      "}\n")
end

return M
