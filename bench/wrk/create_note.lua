-- POST /notes with a note of about 1 KB (the JSON body in BENCH_BODY_FILE).
local dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
local common = dofile(dir .. "common.lua")

common.static("POST", "/notes", common.read(os.getenv("BENCH_BODY_FILE")))
done = common.done
