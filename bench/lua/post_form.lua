-- POST one fixed form body to the URL given to wrk.
--   wrk ... -s post_form.lua URL -- <urlencoded body>
-- wrk's own non-2xx/3xx counter is the only check: without a response() function wrk
-- does not hand bodies to Lua, which keeps it cheap enough for the bare ASGI ceiling.
-- post_form_classified.lua is the same request with the answer mix counted.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local common = require("common")

setup = common.setup
done = common.done

function init(args)
   wrk.method = "POST"
   wrk.body = args[1] or ""
   wrk.headers = common.form_headers()
   wrk.headers["Host"] = wrk.host .. ":" .. wrk.port
end
