-- POST /auth/login with the JSON credentials of the seeded user.
local dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local body = string.format('{"email": "%s", "password": "%s"}',
  os.getenv("BENCH_EMAIL"), os.getenv("BENCH_PASSWORD"))
common.static("POST", "/auth/login", body)
done = common.done
