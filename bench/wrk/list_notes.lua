-- GET /notes?limit=20: the newest page of the seeded user's notes.
local dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
local common = dofile(dir .. "common.lua")

common.static("GET", "/notes?limit=20", nil)
done = common.done
