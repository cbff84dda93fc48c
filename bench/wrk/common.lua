-- Shared by the scripts: headers carrying BENCH_TOKEN, and done(), which prints wrk's
-- figures as one JSON line ("BENCH_RESULT {...}") for bench/run.py to read.
local common = {}

function common.headers()
  local headers = { ["Content-Type"] = "application/json" }
  local token = os.getenv("BENCH_TOKEN")
  if token and token ~= "" then
    headers["Authorization"] = "Bearer " .. token
  end
  return headers
end

-- Sets a request that never changes; wrk then formats it once, with no Lua per request.
function common.static(method, path, body)
  wrk.method = method
  wrk.path = path
  wrk.body = body
  for name, value in pairs(common.headers()) do
    wrk.headers[name] = value
  end
end

function common.read(path)
  local file = assert(io.open(path, "rb"), "cannot open " .. path)
  local text = file:read("*a")
  file:close()
  return text
end

function common.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, '
      .. '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end

return common
