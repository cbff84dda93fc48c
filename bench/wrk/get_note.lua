-- GET /notes/{id}, going round the ids in BENCH_IDS_FILE (one a line). The requests are
-- formatted once in init(), so request() only picks the next one.
local dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local requests = {}
local next_index = 1

function init(args)
  local headers = common.headers()
  for id in common.read(os.getenv("BENCH_IDS_FILE")):gmatch("[^\r\n]+") do
    requests[#requests + 1] = wrk.format("GET", "/notes/" .. id, headers)
  end
  assert(#requests > 0, "no ids in BENCH_IDS_FILE")
end

function request()
  local r = requests[next_index]
  next_index = next_index % #requests + 1
  return r
end

done = common.done
