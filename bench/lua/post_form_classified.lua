-- post_form.lua, with every response counted by status and OAuth "error" member.
--   wrk ... -s post_form_classified.lua URL -- <urlencoded body>
-- (wrk decides whether to collect bodies from the script's globals when it loads it,
-- before init() sees any argument: hence a separate file rather than an option.)

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "post_form.lua")
response = require("common").response
